#!/usr/bin/env python3
"""Generates marketking-cli/demo/corpus.jsonl: the demo corpus bundled into `marketking demo`.

Deterministic (fixed seed), written from templates so the listings and articles read like a
small marketplace: product listings (catalog), help-centre articles (help), blog posts (blog)
and customer reviews (reviews). Run: python3 marketking-cli/demo/make_corpus.py
"""
import json
import os
import random

rng = random.Random(20240611)

PRODUCTS = {
    "footwear": [
        ("Trail running shoes", "lightweight trail running shoes with a grippy lugged sole for rocky, muddy paths"),
        ("Waterproof hiking boots", "waterproof leather hiking boots with ankle support and a breathable membrane"),
        ("Road running shoes", "cushioned road running shoes with a responsive foam midsole for long distances"),
        ("Winter snow boots", "insulated snow boots rated to minus 30 degrees with a slip-resistant outsole"),
        ("Leather loafers", "hand-stitched leather loafers with a cushioned insole for all-day comfort"),
        ("Kids' sneakers", "durable kids' sneakers with hook-and-loop straps and non-marking soles"),
    ],
    "electronics": [
        ("Wireless noise-cancelling headphones", "over-ear wireless headphones with active noise cancelling and 30-hour battery life"),
        ("Bluetooth speaker", "portable waterproof Bluetooth speaker with deep bass and 12 hours of playtime"),
        ("USB-C charger 65W", "compact 65W USB-C GaN charger that powers a laptop and a phone at once"),
        ("Mechanical keyboard", "tenkeyless mechanical keyboard with hot-swappable switches and RGB backlight"),
        ("4K webcam", "4K webcam with autofocus, dual microphones and a privacy shutter"),
        ("E-reader", "glare-free 7-inch e-reader with adjustable warm light and weeks of battery"),
        ("Budget wireless earbuds", "affordable true wireless earbuds with a compact charging case"),
    ],
    "home": [
        ("Cast iron skillet", "pre-seasoned 12-inch cast iron skillet for searing, baking and campfire cooking"),
        ("Espresso machine", "semi-automatic espresso machine with a steam wand for milk drinks"),
        ("Linen bed sheets", "stonewashed linen bed sheet set that stays cool in summer"),
        ("Robot vacuum", "robot vacuum with lidar mapping, no-go zones and automatic dirt disposal"),
        ("Ceramic dinner plates", "set of six stoneware dinner plates, dishwasher and microwave safe"),
        ("Air purifier", "HEPA air purifier for rooms up to 40 square metres, quiet night mode"),
    ],
    "outdoor": [
        ("Two-person tent", "lightweight two-person backpacking tent with a freestanding aluminium frame"),
        ("Down sleeping bag", "800-fill down sleeping bag rated to minus 5 degrees, packs small"),
        ("Insulated water bottle", "vacuum-insulated steel bottle that keeps drinks cold for 24 hours"),
        ("Trekking poles", "collapsible carbon trekking poles with cork grips and flick locks"),
        ("Camping stove", "compact gas camping stove that boils a litre of water in three minutes"),
        ("Headlamp", "rechargeable 400-lumen headlamp with a red night-vision mode"),
    ],
    "fashion": [
        ("Merino wool sweater", "soft merino wool crew-neck sweater that resists odour and itch"),
        ("Rain jacket", "packable waterproof rain jacket with taped seams and a hood"),
        ("Denim jeans", "slim-fit stretch denim jeans in a dark indigo wash"),
        ("Leather wallet", "slim bifold leather wallet with RFID blocking and six card slots"),
        ("Silk scarf", "printed silk scarf, hand-rolled edges, 90 by 90 centimetres"),
    ],
    "toys": [
        ("Wooden building blocks", "set of 100 natural wooden building blocks for toddlers"),
        ("Remote control car", "off-road remote control car with rechargeable battery, 25 km/h"),
        ("Strategy board game", "family strategy board game for 2 to 5 players, about 60 minutes"),
        ("Jigsaw puzzle 1000 pieces", "1000-piece jigsaw puzzle of a mountain lake at sunrise"),
    ],
}

BRANDS = ["Northpeak", "Avenio", "Kestrel", "Lumora", "Brightline", "Oakhaven", "Tidewell", "Voltra", "Marlo", "Quill & Co"]
ADJ = ["Classic", "Pro", "Lite", "Essential", "Plus", "Everyday", "Studio", "Explorer"]
COLORS = ["black", "navy", "olive", "sand", "grey", "red", "white", "forest green"]
CONDITIONS = ["new", "new", "new", "refurbished", "used - like new"]
SELLER_NOTES = [
    "Ships within 24 hours from our warehouse.",
    "Free returns within 30 days.",
    "Comes with a two-year manufacturer warranty.",
    "Bundle discount when bought with matching accessories.",
    "Limited stock; ships in original packaging.",
    "Sold by a top-rated marketplace seller.",
]
PRICE = {"footwear": (39, 220), "electronics": (19, 399), "home": (15, 650), "outdoor": (12, 480), "fashion": (15, 260), "toys": (9, 120)}

HELP = [
    ("How do I return an item?", "returns", "Open Orders, pick the order and choose Return item. Print the prepaid label and drop the parcel at any carrier point within 30 days of delivery. Refunds reach your card 3 to 5 business days after the seller receives the item."),
    ("Tracking a delayed parcel", "shipping", "If tracking has not updated for 48 hours, the parcel is usually waiting at a sorting hub. Check the carrier link on the order page; after 7 days without movement open a claim and we will reship or refund."),
    ("Changing your delivery address", "shipping", "You can change the address until the seller marks the order as shipped. Go to Orders, choose Edit address, and confirm. After shipment, ask the carrier to redirect the parcel."),
    ("Payment methods we accept", "payments", "We accept major credit and debit cards, PayPal, Apple Pay, Google Pay and bank transfer. Buy now, pay later is offered at checkout for orders over 50 euros."),
    ("Why was my card declined?", "payments", "Declines usually come from the bank: insufficient funds, an expired card, a mismatched billing address or 3-D Secure not completed. Try again after confirming with your bank or use another method."),
    ("Resetting your password", "account", "Click Forgot password on the sign-in page, enter your email and follow the link we send. The link expires after one hour. Check your spam folder if it does not arrive."),
    ("Turning on two-factor authentication", "account", "Under Account, Security, choose Two-factor authentication and scan the QR code with an authenticator app. Store the recovery codes somewhere safe."),
    ("Becoming a seller", "selling", "Create a seller account, verify your identity and add a payout bank account. Listing is free; we charge a commission on each sale that depends on the category."),
    ("Seller fees explained", "selling", "Commission ranges from 6 percent for electronics to 12 percent for fashion. There is no monthly fee for the basic plan; the pro plan adds bulk listing tools."),
    ("Reporting a counterfeit listing", "trust", "Use Report listing on the product page and choose Counterfeit. Our trust team reviews reports within one business day and removes listings that break the rules."),
    ("Warranty claims", "returns", "Most products carry the manufacturer's warranty. Contact the seller from the order page with photos of the fault; if they do not answer in three days, escalate to marketplace support."),
    ("Exchanging for a different size", "returns", "Choose Exchange instead of Return on the order page and pick the new size. We ship the replacement as soon as the carrier scans your return."),
    ("International shipping and customs", "shipping", "Orders shipped from outside the EU may incur import duties and VAT, shown at checkout when the seller supports prepaid duties. Otherwise the carrier collects them on delivery."),
    ("Cancelling an order", "orders", "You can cancel free of charge until the seller ships. Open the order and choose Cancel. Refunds for cancelled orders are issued immediately."),
    ("Gift cards and store credit", "payments", "Gift cards never expire and can be combined with other payment methods. Store credit from refunds appears in your wallet and is used first at checkout."),
    ("Leaving a product review", "community", "You can review any product you bought once it is delivered. Reviews must describe your own experience; we remove reviews that contain personal data or links."),
    ("Contacting customer support", "support", "Chat with support from the Help centre every day from 8:00 to 22:00. For urgent issues with a delivery in progress, request a callback."),
    ("Deleting your account", "account", "Go to Account, Privacy, Delete account. Open orders must be completed first. We keep invoices for the legally required period and delete everything else within 30 days."),
]
HELP_EXTRA = [
    "This article applies to all marketplace orders.",
    "Sellers on the pro plan may offer longer periods.",
    "Business customers can find VAT invoices under Orders.",
    "Updated for this season's policies.",
]

BLOG = [
    ("Ten essentials for a weekend hike", "outdoor", "A good pack, layered clothing, water, a headlamp and a map top our list. We also explain how to choose boots and why trekking poles save your knees on steep descents."),
    ("How to pick running shoes for trails and roads", "footwear", "Road shoes favour cushioning and a smooth ride; trail shoes add grip, rock plates and tougher uppers. Try them in the afternoon when your feet are largest."),
    ("Setting up a quiet home office", "electronics", "Noise-cancelling headphones, a solid webcam and a mechanical keyboard with quiet switches make remote work calmer. Position the light source in front of you."),
    ("Caring for cast iron", "home", "Rinse with hot water, dry on the stove and wipe a thin layer of oil. Soap is fine occasionally; avoid soaking. A well-seasoned pan becomes naturally non-stick."),
    ("Gift ideas under 50 euros", "gifts", "Insulated bottles, jigsaw puzzles, silk scarves and budget earbuds are reliable crowd-pleasers. Check the seller's return policy for gifts bought early."),
    ("Sustainable shopping on the marketplace", "sustainability", "Refurbished electronics and pre-owned fashion cut waste. Look for the certified refurbished badge and read the condition notes carefully."),
    ("Winter camping without freezing", "outdoor", "Sleep on two pads, choose a bag rated below the forecast and keep your water bottle inside the bag. Eat a fatty snack before bed."),
    ("Making cafe-quality espresso at home", "home", "Use freshly roasted beans, a burr grinder and about 18 grams per double shot. Aim for 25 to 30 seconds of extraction and adjust the grind first."),
    ("What makes merino wool special", "fashion", "Merino fibres are fine, so they do not itch, and they regulate temperature and resist odour. Wash cool and dry flat to keep the shape."),
    ("Choosing a robot vacuum", "home", "Lidar navigation maps rooms faster than camera-based models. Self-emptying docks are worth it for pet owners. Check the app supports no-go zones."),
    ("Board games for family nights", "toys", "Cooperative games suit younger children; strategy games with short turns keep teenagers engaged. Sixty minutes is the sweet spot for a weeknight."),
    ("Selling your first item: a checklist", "selling", "Take bright photos on a plain background, write the brand and model in the title, state the condition honestly and price against recent sales."),
]
BLOG_ANGLES = [
    "Our editors tested the options over several weeks.",
    "Readers shared their favourite picks in the comments.",
    "Prices checked at the time of writing.",
    "Part of our seasonal buying guide series.",
]

REVIEW_OPEN = {
    5: ["Absolutely love it.", "Exceeded my expectations.", "Best purchase this year."],
    4: ["Very good overall.", "Happy with it.", "Solid choice."],
    3: ["It is okay.", "Mixed feelings.", "Does the job."],
    2: ["Disappointed.", "Not as described.", "Would not buy again."],
    1: ["Broke within a week.", "Terrible quality.", "Returned it immediately."],
}
REVIEW_DETAIL = {
    "footwear": ["The fit runs half a size small.", "Grip on wet rock is excellent.", "Comfortable straight out of the box.", "The sole started peeling after a month."],
    "electronics": ["Battery life is as advertised.", "Bluetooth pairing was painless.", "The noise cancelling is impressive on trains.", "Charging gets warm under load."],
    "home": ["Easy to clean.", "Feels sturdy and well made.", "Louder than I expected.", "Arrived with a chipped corner."],
    "outdoor": ["Survived a stormy night without leaks.", "Packs down really small.", "A bit heavy for long trips.", "Kept my coffee hot all day."],
    "fashion": ["The colour is true to the photos.", "Shrunk slightly after washing.", "Warm without being bulky.", "Stitching feels premium."],
    "toys": ["The kids play with it every day.", "Pieces fit together precisely.", "Battery drains quickly.", "Great for rainy afternoons."],
}
REVIEW_CLOSE = ["Delivery was fast.", "The seller answered my questions quickly.", "Packaging was minimal and recyclable.", "Took two weeks to arrive.", ""]


def main():
    docs = []
    # Catalog: 130 listings.
    cats = list(PRODUCTS)
    products = []
    for n in range(130):
        cat = cats[n % len(cats)]
        name, desc = rng.choice(PRODUCTS[cat])
        brand = rng.choice(BRANDS)
        adj = rng.choice(ADJ)
        color = rng.choice(COLORS)
        lo, hi = PRICE[cat]
        price = round(rng.uniform(lo, hi), 2) - 0.01 if rng.random() < 0.5 else round(rng.uniform(lo, hi), 2)
        price = round(max(price, 1.0), 2)
        cond = rng.choice(CONDITIONS)
        rating = round(rng.uniform(3.2, 5.0), 1)
        title = f"{brand} {adj} {name} - {color}"
        content = (f"{brand}'s {desc}. Colour: {color}. Condition: {cond}. "
                   f"{rng.choice(SELLER_NOTES)} Rated {rating} out of 5 by buyers.")
        key = f"catalog-{n + 1:04d}"
        meta = {"category": cat, "price": price, "brand": brand, "color": color, "condition": cond,
                "rating": rating, "in_stock": rng.random() > 0.15}
        docs.append({"title": title, "content": content, "source": "catalog", "metadata": meta, "key": key})
        products.append((key, cat, title))
    # Help centre: every article, plus regional variants.
    n = 0
    for region in ["", " (UK)", " (US)"]:
        for title, topic, body in HELP:
            if region and rng.random() < 0.55:
                continue
            n += 1
            content = body + " " + rng.choice(HELP_EXTRA)
            if region:
                content += f" Regional note{region}: delivery times and carrier names may differ."
            docs.append({"title": title + region, "content": content, "source": "help",
                         "metadata": {"topic": topic, "region": region.strip(" ()").lower() or "eu"},
                         "key": f"help-{n:03d}"})
    # Blog: each post once or twice with different angles.
    n = 0
    for title, topic, body in BLOG:
        for part in range(rng.choice([1, 2, 3])):
            n += 1
            t = title if part == 0 else f"{title}, part {part + 1}"
            docs.append({"title": t, "content": body + " " + rng.choice(BLOG_ANGLES), "source": "blog",
                         "metadata": {"topic": topic, "reading_minutes": rng.randint(3, 12)},
                         "key": f"blog-{n:03d}"})
    # Reviews: 60 reviews of catalog listings.
    for n in range(60):
        key, cat, ptitle = rng.choice(products)
        stars = rng.choices([5, 4, 3, 2, 1], weights=[40, 30, 15, 10, 5])[0]
        text = " ".join(filter(None, [rng.choice(REVIEW_OPEN[stars]), rng.choice(REVIEW_DETAIL[cat]),
                                      rng.choice(REVIEW_DETAIL[cat]), rng.choice(REVIEW_CLOSE)]))
        docs.append({"title": f"Review: {ptitle}"[:255], "content": text, "source": "reviews",
                     "metadata": {"stars": stars, "category": cat, "product_key": key, "verified": rng.random() > 0.2},
                     "key": f"review-{n + 1:03d}"})
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    print(f"wrote {len(docs)} documents to {out}")


if __name__ == "__main__":
    main()

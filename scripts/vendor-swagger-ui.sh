#!/usr/bin/env bash
# Vendors Swagger UI (npm's swagger-ui-dist, pinned) into marketking-http/assets/swagger-ui/,
# which the server embeds for GET /docs. The files are checked in, so a build needs no network;
# run this only to change the version:
#
#   bash scripts/vendor-swagger-ui.sh
#
# To upgrade: set VERSION, run it once (it fails and prints the new tarball's SHA-256), check
# the version's changes, put that SHA-256 in SHA256 and run it again. It writes the folder's
# README.md (version, tarball checksum, checksum of each file kept).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=5.35.0
SHA256=1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6
# Only what the page loads, plus the licences that must travel with it (Apache-2.0 LICENSE and
# NOTICE; the bundle's third-party notices). No source maps, no other bundles.
FILES=(swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt)
DEST=marketking-http/assets/swagger-ui

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# --ignore-scripts: nothing from the package runs here; `npm pack` only fetches the tarball.
(cd "$TMP" && npm pack --silent --ignore-scripts "swagger-ui-dist@$VERSION" >/dev/null)
tarball="$TMP/swagger-ui-dist-$VERSION.tgz"
[ -f "$tarball" ] || { echo "npm pack did not write $tarball" >&2; exit 1; }
got="$(sha256sum "$tarball" | cut -d' ' -f1)"
if [ "$got" != "$SHA256" ]; then
    echo "swagger-ui-dist@$VERSION: SHA-256 $got, expected $SHA256; refusing to vendor it" >&2
    exit 1
fi

mkdir "$TMP/x"
tar -xzf "$tarball" -C "$TMP/x" "${FILES[@]/#/package/}"
rm -rf "$DEST"
mkdir -p "$DEST"
for f in "${FILES[@]}"; do
    install -m 0644 "$TMP/x/package/$f" "$DEST/$f"
done

{
    echo "# Swagger UI, vendored"
    echo
    echo "npm package \`swagger-ui-dist@$VERSION\`, the files that \`GET /docs\` serves and their licences,"
    echo "copied unchanged by \`scripts/vendor-swagger-ui.sh\` (do not edit them by hand; change the"
    echo "version there). The server embeds them at build time, so it needs no network and no CDN."
    echo
    echo "- version: $VERSION"
    echo "- SHA-256 of the npm tarball (\`swagger-ui-dist-$VERSION.tgz\`): \`$SHA256\`"
    echo "- licence: Apache-2.0 (\`LICENSE\`, \`NOTICE\`); bundled third-party notices in"
    echo "  \`swagger-ui-bundle.js.LICENSE.txt\`"
    echo
    echo "SHA-256 of each file (check them with \`sha256sum -c\` on these lines, in this folder):"
    echo
    echo '```'
    (cd "$DEST" && sha256sum "${FILES[@]}")
    echo '```'
} >"$DEST/README.md"
echo "vendored swagger-ui-dist@$VERSION into $DEST:"
ls -l "$DEST"

//! Bounded load: a fixed number of closed-loop clients (each sends its next request when the
//! previous one answered), every request recorded, and the per-phase summary tables.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use tokio::task::JoinHandle;

use crate::http::{Http, Transport};

/// How long a client waits after a failed request before its next one.
pub(crate) const FAILURE_PAUSE: Duration = Duration::from_millis(50);

/// Seconds since the start of a scenario; every sample and fault time is on this clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub(crate) fn start() -> Clock {
        Clock(Instant::now())
    }

    /// Seconds since the start.
    pub(crate) fn now(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// One request a load client sends.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    /// Operation name for the tables (`search`, `get`, ...).
    pub(crate) op: &'static str,
    /// Method.
    pub(crate) method: Method,
    /// Path and query.
    pub(crate) path: String,
    /// JSON body.
    pub(crate) body: Option<Bytes>,
}

impl Req {
    /// A `GET`.
    pub(crate) fn get(op: &'static str, path: String) -> Req {
        Req { op, method: Method::GET, path, body: None }
    }

    /// A request with a JSON body.
    pub(crate) fn json(op: &'static str, method: Method, path: &str, body: &serde_json::Value) -> Req {
        Req { op, method, path: path.to_string(), body: Some(Bytes::from(body.to_string())) }
    }
}

/// Makes client `worker`'s `seq`-th request.
pub(crate) type MakeReq = Arc<dyn Fn(usize, u64) -> Req + Send + Sync>;

/// What became of one request.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Operation name.
    pub(crate) op: &'static str,
    /// When it was sent (scenario clock, seconds).
    pub(crate) start: f64,
    /// When it was answered or failed.
    pub(crate) end: f64,
    /// The status and whether it had `Retry-After`, or the transport failure.
    pub(crate) result: Result<(u16, bool), Transport>,
}

impl Sample {
    /// A 2xx answer.
    pub(crate) fn ok(&self) -> bool {
        matches!(self.result, Ok((s, _)) if (200..300).contains(&s))
    }

    /// The failure class for the tables (`503`, `503 no Retry-After`, `dropped`...), `None` for 2xx.
    pub(crate) fn failure(&self) -> Option<String> {
        match self.result {
            Ok((s, _)) if (200..300).contains(&s) => None,
            Ok((503, false)) => Some("503 no Retry-After".into()),
            Ok((s, _)) => Some(s.to_string()),
            Err(t) => Some(t.to_string()),
        }
    }
}

/// Clients running until [`Load::stop`].
#[derive(Debug)]
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Sample>>>,
    started: f64,
    clock: Clock,
}

/// The samples of a finished load, with how long it ran.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    /// Every request.
    pub(crate) samples: Vec<Sample>,
    /// From the start to the moment the last client finished its last request, seconds.
    pub(crate) secs: f64,
    /// When the load started (scenario clock).
    pub(crate) started: f64,
}

impl Run {
    /// Only the requests answered within `secs` of the start, over exactly `secs`: a fixed
    /// window, so a slow last request does not stretch the duration the throughput is over.
    pub(crate) fn window(&self, secs: f64) -> Run {
        let end = self.started + secs;
        let samples = self.samples.iter().filter(|s| s.end <= end).cloned().collect();
        Run { samples, secs, started: self.started }
    }
}

impl Load {
    /// Starts `clients` closed-loop clients against `http`.
    pub(crate) fn start(http: &Http, clients: usize, clock: Clock, make: MakeReq) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = clock.now();
        let workers = (0..clients)
            .map(|w| {
                let (http, stop, make) = (http.clone(), stop.clone(), make.clone());
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let req = make(w, seq);
                        seq += 1;
                        let start = clock.now();
                        let result = http
                            .send(req.method, &req.path, req.body)
                            .await
                            .map(|r| (r.status, r.retry_after.is_some()))
                            .map_err(|(kind, _)| kind);
                        let sample = Sample { op: req.op, start, end: clock.now(), result };
                        let failed = !sample.ok();
                        out.push(sample);
                        if failed {
                            // A short pause after a failure, as a client with any backoff makes:
                            // a fast 503 or a refused connect would otherwise turn the bounded
                            // load into a spin of tens of thousands of failures a second.
                            tokio::time::sleep(FAILURE_PAUSE).await;
                        }
                    }
                    out
                })
            })
            .collect();
        Load { stop, workers, started, clock }
    }

    /// Stops the clients after their current request and returns everything they recorded.
    pub(crate) async fn stop(self) -> Run {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for w in self.workers {
            samples.extend(w.await.unwrap_or_default());
        }
        samples.sort_by(|a, b| a.start.total_cmp(&b.start));
        Run { samples, secs: self.clock.now() - self.started, started: self.started }
    }
}

/// Runs `clients` clients for `dur` and returns what they recorded.
pub(crate) async fn run_for(http: &Http, clients: usize, clock: Clock, make: MakeReq, dur: Duration) -> Run {
    let load = Load::start(http, clients, clock, make);
    tokio::time::sleep(dur).await;
    load.stop().await
}

/// Figures of a set of requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// Requests sent.
    pub(crate) requests: usize,
    /// 2xx answers.
    pub(crate) ok: usize,
    /// Failures by class.
    pub(crate) failures: BTreeMap<String, usize>,
    /// Duration the figures are over, seconds.
    pub(crate) secs: f64,
    /// Median latency, ms.
    pub(crate) p50_ms: f64,
    /// 99th percentile latency, ms.
    pub(crate) p99_ms: f64,
}

impl Summary {
    /// Figures of `samples` over `secs` seconds.
    pub(crate) fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>, secs: f64) -> Summary {
        let mut s = Summary { secs, ..Summary::default() };
        let mut lat = Vec::new();
        for x in samples {
            s.requests += 1;
            lat.push((x.end - x.start) * 1000.0);
            match x.failure() {
                None => s.ok += 1,
                Some(f) => *s.failures.entry(f).or_default() += 1,
            }
        }
        lat.sort_by(f64::total_cmp);
        s.p50_ms = percentile(&lat, 0.50);
        s.p99_ms = percentile(&lat, 0.99);
        s
    }

    /// Figures of a whole run.
    pub(crate) fn of_run(run: &Run) -> Summary {
        Summary::of(&run.samples, run.secs)
    }

    /// The same figures over another duration.
    pub(crate) fn with_secs(mut self, secs: f64) -> Summary {
        self.secs = secs;
        self
    }

    /// Failed requests.
    pub(crate) fn failed(&self) -> usize {
        self.requests - self.ok
    }

    /// 2xx answers per second.
    pub(crate) fn ok_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            0.0
        }
    }

    /// `503:4 dropped:1`, or `-`.
    pub(crate) fn failures_text(&self) -> String {
        if self.failures.is_empty() {
            return "-".into();
        }
        self.failures.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" ")
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

/// Prints one table: a row per phase.
pub(crate) fn print_table(title: &str, rows: &[(String, Summary)]) {
    println!("  {title}");
    println!(
        "    {:<28} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}  failures",
        "phase", "requests", "ok", "failed", "ok/s", "p50 ms", "p99 ms"
    );
    for (name, s) in rows {
        println!(
            "    {:<28} {:>8} {:>8} {:>8} {:>9.1} {:>9.1} {:>9.1}  {}",
            name,
            s.requests,
            s.ok,
            s.failed(),
            s.ok_per_sec(),
            s.p50_ms,
            s.p99_ms,
            s.failures_text()
        );
    }
}

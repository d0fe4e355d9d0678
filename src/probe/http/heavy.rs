//! CPU-heavy work on a response (HTML parsing, JSON parsing and JSONPath, regexes on the body)
//! runs on blocking threads, never on an async worker: a hostile page (1 MB of nested `<div>`s
//! costs html5ever quadratic time) must not stall `/-/healthy`, other checks or shutdown.
//!
//! At most one job per CPU runs at a time (a flood of slow pages queues instead of taking every
//! blocking thread), and the run awaits its job only until the step's deadline. The job gets a
//! [`Cancel`] that turns true at that deadline or when the run is abandoned; the HTML parser
//! checks it between chunks of [`HTML_CHUNK`] bytes, so an abandoned parse stops soon after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use html5ever::tendril::TendrilSink;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Bytes of HTML fed to the parser between two looks at the deadline. Small, because one chunk
/// of deeply nested elements costs time proportional to the nesting depth per element.
pub const HTML_CHUNK: usize = 2 * 1024;

/// One permit per CPU.
static PERMITS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    Arc::new(Semaphore::new(cpus))
});

/// Whether a job should give up: its deadline passed or nobody awaits its result any more.
#[derive(Clone)]
pub struct Cancel {
    abandoned: Arc<AtomicBool>,
    deadline: std::time::Instant,
}

impl Cancel {
    /// A flag that only turns true at `deadline` (for callers with no run to abandon).
    pub fn at(deadline: std::time::Instant) -> Cancel {
        Cancel {
            abandoned: Arc::new(AtomicBool::new(false)),
            deadline,
        }
    }

    /// Never cancelled.
    pub fn never() -> Cancel {
        // A century is "never" for one check run and cannot overflow Instant.
        Cancel::at(std::time::Instant::now() + std::time::Duration::from_secs(100 * 365 * 86_400))
    }

    /// True once the job's result is no longer wanted.
    pub fn is_cancelled(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed) || std::time::Instant::now() >= self.deadline
    }
}

/// Sets the flag when the awaiting run goes away (timeout, abort by the scheduler, shutdown).
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Why a job gave no result.
#[derive(Debug, PartialEq, Eq)]
pub enum JobError {
    /// The deadline came first (waiting for a permit or running).
    Timeout,
    /// The job panicked (a bug in a parser); the message is fixed text, no peer data.
    Panicked,
}

/// Runs `job` on a blocking thread under a CPU permit and returns its result, or
/// [`JobError::Timeout`] at `deadline`. (Under a paused tokio clock the wait for the blocking
/// thread lets time jump to the deadline: tests of body work run on the real clock.)
pub async fn run<T, F>(deadline: Instant, job: F) -> Result<T, JobError>
where
    T: Send + 'static,
    F: FnOnce(&Cancel) -> T + Send + 'static,
{
    let cancel = Cancel::at(deadline.into_std());
    let _abandon = AbandonOnDrop(cancel.abandoned.clone());
    let permit = tokio::time::timeout_at(deadline, PERMITS.clone().acquire_owned())
        .await
        .map_err(|_| JobError::Timeout)?
        .map_err(|_| JobError::Panicked)?;
    let handle = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job(&cancel)
    });
    match tokio::time::timeout_at(deadline, handle).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(JobError::Panicked),
        Err(_) => Err(JobError::Timeout),
    }
}

/// Parses an HTML document chunk by chunk; `None` when `cancel` turned true first.
pub fn parse_html(body: &str, cancel: &Cancel) -> Option<scraper::Html> {
    let sink = scraper::HtmlTreeSink::new(scraper::Html::new_document());
    let mut parser = html5ever::driver::parse_document(sink, Default::default());
    let mut rest = body;
    while !rest.is_empty() {
        if cancel.is_cancelled() {
            return None;
        }
        let mut cut = rest.len().min(HTML_CHUNK);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        parser.process(chunk.into());
        rest = tail;
    }
    Some(parser.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn chunked_parse_matches_a_whole_parse() {
        let page = format!(
            "<html><body>{}<p id=x>é ü {}</p></body></html>",
            "<div class=a>ß</div>".repeat(500),
            "漢字".repeat(3000)
        );
        let sel = scraper::Selector::parse("p#x").unwrap();
        let chunked = parse_html(&page, &Cancel::never()).unwrap();
        let whole = scraper::Html::parse_document(&page);
        let text = |h: &scraper::Html| h.select(&sel).next().unwrap().text().collect::<String>();
        assert_eq!(text(&chunked), text(&whole));
        assert_eq!(chunked.html(), whole.html());
    }

    #[test]
    fn a_parse_stops_at_its_deadline() {
        let page = "<div>".repeat(200_000);
        let begun = std::time::Instant::now();
        let cancel = Cancel::at(begun + Duration::from_millis(200));
        assert!(parse_html(&page, &cancel).is_none());
        let took = begun.elapsed();
        assert!(took < Duration::from_secs(2), "parse ran on for {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_one_job_per_cpu_runs_at_once() {
        use std::sync::atomic::AtomicUsize;
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let jobs = (0..cpus * 3).map(|_| {
            let (now, max) = (now.clone(), max.clone());
            tokio::spawn(run(Instant::now() + Duration::from_secs(20), move |_| {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                now.fetch_sub(1, Ordering::SeqCst);
            }))
        });
        for j in jobs.collect::<Vec<_>>() {
            assert_eq!(j.await.unwrap(), Ok(()));
        }
        let max = max.load(Ordering::SeqCst);
        assert!(
            (1..=cpus).contains(&max),
            "{max} jobs at once on {cpus} CPUs"
        );
    }

    #[tokio::test]
    async fn the_run_returns_at_the_deadline_and_abandons_the_job() {
        let seen = Arc::new(AtomicBool::new(false));
        let seen2 = seen.clone();
        let begun = Instant::now();
        let res = run(begun + Duration::from_millis(100), move |c: &Cancel| {
            while !c.abandoned.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            seen2.store(true, Ordering::Relaxed);
        })
        .await;
        assert_eq!(res, Err(JobError::Timeout));
        assert!(begun.elapsed() < Duration::from_millis(500));
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while !seen.load(Ordering::Relaxed) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(seen.load(Ordering::Relaxed), "the job saw it was abandoned");
        assert_eq!(
            run(Instant::now() + Duration::from_secs(5), |_| 7).await,
            Ok(7)
        );
        assert_eq!(
            run(Instant::now() + Duration::from_secs(5), |_| -> u8 {
                panic!("bug")
            })
            .await,
            Err(JobError::Panicked)
        );
    }
}

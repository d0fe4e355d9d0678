//! Property tests of what the canary systems parse from Redis: any reply, any record, any
//! compressed stream gives a value or an error naming the key — never a panic, never a hang.

use proptest::prelude::*;
use redis::Value;

use super::system::Seen;
use super::{celery, rq, sidekiq};

/// Any Redis reply, nested up to three levels.
fn reply() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        Just(Value::Okay),
        any::<i64>().prop_map(Value::Int),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::BulkString),
        "[ -~]{0,32}".prop_map(Value::SimpleString),
        prop_oneof![
            Just("queued"),
            Just("started"),
            Just("finished"),
            Just("failed"),
            Just("2026-12-04T10:00:00.123456Z"),
            Just("x"),
        ]
        .prop_map(|s| Value::BulkString(s.as_bytes().to_vec())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(Value::Array)
    })
}

/// Bytes that are sometimes JSON shaped like the systems' records.
fn record() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        (
            "[ -~]{0,24}",
            prop_oneof![Just("SUCCESS"), Just("FAILURE"), Just("RETRY"), Just("x")],
            any::<f64>()
        )
            .prop_map(|(id, status, t)| serde_json::json!({
                "jid": id, "task_id": id, "status": status, "run_at": t,
                "date_done": "2026-12-04T10:00:00", "payload": format!("{{\"jid\":\"{id}\"}}"),
                "error_class": "E", "error_message": id, "failed_at": t,
                "result": {"exc_type": "ValueError", "exc_message": [id]},
            })
            .to_string()
            .into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// RQ: any pair of replies to the hash read and the results read.
    #[test]
    fn rq_reads_any_reply(job in reply(), result in reply()) {
        if let (Ok(job), Ok(result)) = (rq::job_fields(job, "rq:job:x"), rq::run_result(result, "rq:results:x")) {
            let _ = rq::seen(job, result, "rq:job:x");
        }
    }

    /// RQ's inflater: garbage is refused or inflated within its bound; what it compresses
    /// comes back.
    #[test]
    fn rq_inflates_garbage_without_panicking_and_round_trips(
        garbage in proptest::collection::vec(any::<u8>(), 0..512),
        text in proptest::collection::vec(any::<u8>(), 0..40_000),
        keep in 0usize..100_000,
    ) {
        let mut zlib = vec![0x78, 0x9c];
        zlib.extend(&garbage);
        let _ = rq::inflate_tail(&garbage, keep);
        let _ = rq::inflate_tail(&zlib, keep);
        let back = rq::inflate_tail(&rq::zlib_stored(&text), keep).unwrap();
        let kept = keep.max(32 * 1024).min(text.len());
        prop_assert_eq!(&back[back.len() - kept..], &text[text.len() - kept..]);
        let _ = rq::exception_text(&String::from_utf8_lossy(&garbage));
    }

    /// Celery: any result record, any EXEC reply, any date text.
    #[test]
    fn celery_reads_any_record(raw in record(), exec in reply(), n in 0usize..6, date in "\\PC{0,40}") {
        if let Ok(Some(Seen::Failed { error, .. })) = celery::from_result(&raw, "celery-task-meta-x") {
            prop_assert!(error.len() < 100_000);
        }
        let _ = celery::exec_replies(exec, n);
        let _ = celery::parse_iso(&date);
    }

    /// Sidekiq: any work-hash value and any retry/dead member.
    #[test]
    fn sidekiq_reads_any_entry(raw in record(), id in "[ -~]{0,24}") {
        let _ = sidekiq::parse_work(&raw, &id, "p:workers");
        let _ = sidekiq::parse_failure(&raw, &id, "dead");
    }
}

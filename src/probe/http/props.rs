//! Property tests of the readers of untrusted bytes: extraction and assertions (css, json,
//! regex, header, cookie) on arbitrary bodies, headers and cookies never panic, and the chunked
//! HTML parser agrees with a whole-document parse.

use std::path::Path;

use bytes::Bytes;
use cookie_store::CookieStore;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use url::Url;

use super::heavy::{self, Cancel};
use super::spec::HttpSpec;
use super::transport::Response;
use super::{assert, extract};
use crate::probe::http::def::Http;
use crate::probe::StepResult;

const CASES: u32 = 2_000;

/// One step with every extraction source and every body/header/json/cookie assertion (built
/// once: compiling its regexes and selectors dominates a case otherwise).
fn spec() -> std::sync::Arc<HttpSpec> {
    static SPEC: std::sync::LazyLock<std::sync::Arc<HttpSpec>> = std::sync::LazyLock::new(build);
    SPEC.clone()
}

fn build() -> std::sync::Arc<HttpSpec> {
    let yaml = r#"
checks:
  - name: props
    http:
      steps:
        - name: s
          request: {url: "http://127.0.0.1:1/a"}
          expect:
            status: [200, "3xx", "400-499"]
            body_contains: ["<div", "é"]
            body_not_contains: "error"
            body_regex: ['(?s)<(\w+)[^>]*>.*</', '"id":\s*(\d+)']
            header: {Content-Type: text/html, X-Token: abc}
            json:
              "$.id": 7
              "$.items[*].name": {exists: true}
              "$..deep": {exists: false}
              "$.name": {matches: '^[a-z]+$'}
              "$.n": {less_than: 10}
              "$.m": {greater_than: -1.5}
              "$.e": {equals: {"a": [1, null]}}
            cookie: [session, csrftoken]
          extract:
            r: {regex: '(\d+)'}
            r0: {regex: 'a.c'}
            c1: {css: 'input[name=csrf]', attr: value}
            c2: {css: 'div > p:nth-child(2n+1), title'}
            c3: {css: ':not(a) ~ b'}
            j1: {json: "$.id"}
            j2: {json: "$..name"}
            j3: {json: "$.items[-1:]"}
            h: {header: X-Token}
            k: {cookie: session}
            st: {status: true}
"#;
    let check = crate::probe::check::load_checks_str(Path::new("props.yaml"), yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0);
    check.kind.spec::<Http>().expect("an http check").clone()
}

fn html() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "<div>",
            "</div>",
            "<p>",
            "</p>",
            "<title>",
            "</title>",
            "<b>",
            "<a href=x>",
            "</a>",
            "<input name=csrf value=\"t0k\">",
            "<table><tr><td>",
            "<!--",
            "-->",
            "<![CDATA[",
            "<script>",
            "</script>",
            "<template>",
            "<svg><math>",
            "&amp;",
            "&#x1F600;",
            "&#0;",
            "&",
            "<",
            ">",
            "\u{0}",
            "é",
            "<select><option>",
            "<frameset>",
            "<plaintext>",
        ])
        .prop_map(str::to_string),
        "[a-z <>/=\"']{0,12}",
    ];
    prop::collection::vec(piece, 0..200).prop_map(|p| p.concat())
}

fn json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:e}")),
        "\"[a-z\\\\\"é]{0,6}\"",
        Just("1e999".to_string()),
        Just("[".repeat(300)),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["id", "items", "name", "deep", "n", "m", "e", "a"]),
                    inner
                ),
                0..6
            )
            .prop_map(|v| format!(
                "{{{}}}",
                v.iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        any::<String>().prop_map(String::into_bytes),
        html().prop_map(String::into_bytes),
        json().prop_map(String::into_bytes),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        prop::sample::select(vec!["content-type", "x-token", "set-cookie", "location"])
            .prop_map(str::to_string),
        "[a-z-]{1,12}",
    ];
    prop::collection::vec((name, prop::collection::vec(any::<u8>(), 0..64)), 0..8)
}

fn cookies() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            any::<String>(),
            "(session|csrftoken|x)=[^;]{0,10}(; Path=/[a-z]{0,3})?(; Max-Age=-?[0-9]{1,3})?(; Domain=[a-z.0-9]{0,12})?",
        ],
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn extraction_and_assertions_never_panic(
        status in 100u16..600,
        body in body(),
        headers in headers(),
        cookies in cookies(),
    ) {
        let spec = spec();
        let step = &spec.steps[0];
        let url = Url::parse("http://127.0.0.1:1/a").unwrap();
        let mut map = HeaderMap::new();
        for (n, v) in &headers {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_bytes(v)) {
                map.append(n, v);
            }
        }
        let mut jar = CookieStore::default();
        for c in &cookies {
            let _ = jar.parse(c, &url);
        }
        let resp = Response {
            status,
            headers: map,
            body: Bytes::from(body),
            phases: Default::default(),
            cert_not_after: None,
            remote: "127.0.0.1:1".parse().unwrap(),
        };
        let mut out = StepResult::default();
        let passed = assert::evaluate(step, &resp, &url, &jar, Default::default(), &mut out);
        prop_assert_eq!(passed, out.assertions.iter().all(|a| a.passed));
        prop_assert_eq!(passed, out.message.is_none());
        match extract::run(step, &resp, &jar, &url, &Cancel::never()) {
            Ok(values) => {
                let st = values.iter().find(|(k, _)| k == "st").map(|(_, v)| v.clone());
                prop_assert_eq!(st, Some(status.to_string()));
            }
            Err(extract::Failed::Missing(m)) => prop_assert!(m.starts_with("could not extract")),
            Err(extract::Failed::Cancelled) => prop_assert!(false, "never cancelled"),
        }
    }

    #[test]
    fn the_chunked_html_parse_agrees_with_a_whole_parse(page in html()) {
        // Chunk borders fall inside tags, entities and multi-byte characters.
        let chunked = heavy::parse_html(&page, &Cancel::never()).unwrap();
        prop_assert_eq!(chunked.html(), scraper::Html::parse_document(&page).html());
    }
}

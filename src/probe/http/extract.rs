//! Extraction of variables from a step's response.

use cookie_store::CookieStore;
use url::Url;

use super::heavy::{self, Cancel};
use super::spec::{ExtractSource, StepSpec};
use super::transport::Response;

/// Why extraction gave no values.
#[derive(Debug, PartialEq, Eq)]
pub enum Failed {
    /// A value was missing; the message names variable and source.
    Missing(String),
    /// `cancel` turned true while parsing the body.
    Cancelled,
}

/// Whether extraction parses or searches the body (then it runs off the async workers).
pub fn reads_body(step: &StepSpec) -> bool {
    step.extract.iter().any(|e| {
        matches!(
            e.source,
            ExtractSource::Regex(_) | ExtractSource::Css { .. } | ExtractSource::Json { .. }
        )
    })
}

/// Runs every extraction of `step`; a missing value fails the step, naming variable and source.
pub fn run(
    step: &StepSpec,
    resp: &Response,
    jar: &CookieStore,
    url: &Url,
    cancel: &Cancel,
) -> Result<Vec<(String, String)>, Failed> {
    let mut out = Vec::with_capacity(step.extract.len());
    let mut html = None;
    let mut json = None;
    for e in &step.extract {
        let missing = || format!("could not extract {} from {}", e.var, e.source.describe());
        let value = match &e.source {
            ExtractSource::Regex(r) => {
                let body = String::from_utf8_lossy(&resp.body);
                r.captures(&body)
                    .and_then(|c| c.get(1).or_else(|| c.get(0)))
                    .map(|m| m.as_str().to_string())
            }
            ExtractSource::Css { selector, attr, .. } => {
                if html.is_none() {
                    let body = String::from_utf8_lossy(&resp.body);
                    html = Some(heavy::parse_html(&body, cancel).ok_or(Failed::Cancelled)?);
                }
                let doc = html.as_ref().expect("set above");
                doc.select(selector).next().and_then(|el| match attr {
                    Some(a) => el.value().attr(a).map(str::to_string),
                    None => Some(el.text().collect::<String>().trim().to_string()),
                })
            }
            ExtractSource::Json { path, .. } => {
                if json.is_none() {
                    json = Some(
                        serde_json::from_slice::<serde_json::Value>(&resp.body).map_err(|err| {
                            Failed::Missing(format!(
                                "could not extract {}: body is not JSON ({err})",
                                e.var
                            ))
                        })?,
                    );
                }
                let doc = json.as_ref().expect("set above");
                path.query(doc).first().map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            }
            ExtractSource::Header(h) => resp
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            ExtractSource::Cookie(name) => {
                let from_url = jar
                    .get_request_values(url)
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.to_string());
                from_url.or_else(|| {
                    jar.iter_unexpired()
                        .find(|c| c.name() == name)
                        .map(|c| c.value().to_string())
                })
            }
            ExtractSource::Status => Some(resp.status.to_string()),
        };
        match value {
            Some(v) => out.push((e.var.clone(), v)),
            None => return Err(Failed::Missing(missing())),
        }
    }
    Ok(out)
}

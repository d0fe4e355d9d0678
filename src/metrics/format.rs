//! Exposition formats: content negotiation, and the rewrite of prometheus-client's OpenMetrics
//! text into Prometheus text format 0.0.4.

use std::fmt;

/// The exposition format of one `/metrics` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text,
    /// OpenMetrics text 1.0.0 (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

impl Format {
    /// Picks the format for a request's `Accept` header.
    ///
    /// OpenMetrics when the header asks for `application/openmetrics-text` (version 1.0.0, 0.0.1
    /// or unversioned) with a weight at least as high as anything that accepts the text format
    /// (`text/plain`, `text/*`, `*/*`); text otherwise, including when there is no header.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut q_openmetrics = 0.0_f32;
        let mut q_text = 0.0_f32;
        for range in accept.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or_default().trim();
            let mut q = 1.0_f32;
            let mut version: Option<&str> = None;
            let mut valid = true;
            for param in params {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let (key, value) = (key.trim(), value.trim().trim_matches('"'));
                if key.eq_ignore_ascii_case("q") {
                    match value.parse::<f32>() {
                        Ok(v) if (0.0..=1.0).contains(&v) => q = v,
                        _ => valid = false,
                    }
                } else if key.eq_ignore_ascii_case("version") {
                    version = Some(value);
                }
            }
            if !valid {
                continue;
            }
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                if matches!(version, None | Some("1.0.0") | Some("0.0.1")) {
                    q_openmetrics = q_openmetrics.max(q);
                }
            } else if media.eq_ignore_ascii_case("text/plain") {
                // 1.0.0 is Prometheus 3's text format: 0.0.4 with UTF-8 names, so 0.0.4 suits it.
                if matches!(version, None | Some("0.0.4") | Some("1.0.0")) {
                    q_text = q_text.max(q);
                }
            } else if media.eq_ignore_ascii_case("text/*") || media == "*/*" {
                q_text = q_text.max(q);
            }
        }
        if q_openmetrics > 0.0 && q_openmetrics >= q_text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A writer that takes prometheus-client's OpenMetrics text and writes Prometheus text 0.0.4.
///
/// Sample lines are the same in both formats (prometheus-client already writes counters as
/// `x_total`, info metrics as `x_info`, histograms with `_bucket`/`_sum`/`_count`), so they pass
/// through untouched; only the `#` lines differ, and they are buffered and rewritten:
/// - `# TYPE x counter` → `# TYPE x_total counter` (and its `# HELP` likewise);
/// - `# TYPE x info` → `# TYPE x_info gauge`; `unknown` → `untyped`;
/// - `# UNIT` and `# EOF` are dropped.
///
/// Help texts must not contain backslashes, quotes or newlines (the two formats escape them
/// differently); every help text in this module is a constant that honours this.
pub(crate) struct TextRewriter<'a> {
    out: &'a mut String,
    line_start: bool,
    comment: String,
    pending_help: Option<String>,
}

impl<'a> TextRewriter<'a> {
    pub(crate) fn new(out: &'a mut String) -> Self {
        TextRewriter {
            out,
            line_start: true,
            comment: String::new(),
            pending_help: None,
        }
    }

    /// Writes out anything still buffered.
    pub(crate) fn finish(mut self) {
        if !self.comment.is_empty() {
            self.comment.push('\n');
            self.flush_comment();
        }
        if let Some(help) = self.pending_help.take() {
            self.out.push_str(&help);
        }
    }

    fn flush_comment(&mut self) {
        let line = std::mem::take(&mut self.comment);
        let mut words = line.trim_end_matches('\n').splitn(4, ' ');
        let (hash, keyword, name, rest) = (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        );
        if hash != "#" {
            self.emit_pending_help();
            self.out.push_str(&line);
            return;
        }
        match keyword {
            "HELP" => {
                self.emit_pending_help();
                self.pending_help = Some(line);
            }
            "TYPE" => {
                let (suffix, text_type) = match rest {
                    "counter" => ("_total", "counter"),
                    "info" => ("_info", "gauge"),
                    "unknown" => ("", "untyped"),
                    other => ("", other),
                };
                if let Some(help) = self.pending_help.take() {
                    match help
                        .strip_prefix("# HELP ")
                        .and_then(|h| h.strip_prefix(name))
                    {
                        Some(after_name) if after_name.starts_with(' ') => {
                            self.out.push_str("# HELP ");
                            self.out.push_str(name);
                            self.out.push_str(suffix);
                            self.out.push_str(after_name);
                        }
                        _ => self.out.push_str(&help),
                    }
                }
                self.out.push_str("# TYPE ");
                self.out.push_str(name);
                self.out.push_str(suffix);
                self.out.push(' ');
                self.out.push_str(text_type);
                self.out.push('\n');
            }
            "UNIT" | "EOF" => {}
            _ => {
                self.emit_pending_help();
                self.out.push_str(&line);
            }
        }
    }

    fn emit_pending_help(&mut self) {
        if let Some(help) = self.pending_help.take() {
            self.out.push_str(&help);
        }
    }
}

impl fmt::Write for TextRewriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.is_empty() {
            return Ok(());
        }
        if !self.comment.is_empty() || (self.line_start && s.starts_with('#')) {
            self.comment.push_str(s);
            if s.ends_with('\n') {
                self.flush_comment();
                self.line_start = true;
            }
            return Ok(());
        }
        self.out.push_str(s);
        self.line_start = s.ends_with('\n');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    fn rewrite(om: &str) -> String {
        let mut out = String::new();
        let mut w = TextRewriter::new(&mut out);
        // Feed it in small pieces, as the encoder does.
        for piece in om.split_inclusive([' ', '\n']) {
            w.write_str(piece).unwrap();
        }
        w.finish();
        out
    }

    #[test]
    fn rewrites_descriptors_only() {
        let om = "# HELP a_runs Runs.\n# TYPE a_runs counter\na_runs_total{x=\"# y\"} 1\n\
                  # HELP a_seconds Secs.\n# TYPE a_seconds gauge\n# UNIT a_seconds seconds\n\
                  a_seconds 0.5\n# HELP b Build.\n# TYPE b info\nb_info{v=\"1\"} 1\n\
                  # HELP c C.\n# TYPE c unknown\nc 1\n# EOF\n";
        let text =
            "# HELP a_runs_total Runs.\n# TYPE a_runs_total counter\na_runs_total{x=\"# y\"} 1\n\
                    # HELP a_seconds Secs.\n# TYPE a_seconds gauge\na_seconds 0.5\n\
                    # HELP b_info Build.\n# TYPE b_info gauge\nb_info{v=\"1\"} 1\n\
                    # HELP c C.\n# TYPE c untyped\nc 1\n";
        assert_eq!(rewrite(om), text);
    }

    #[test]
    fn negotiation() {
        let prom = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        let prom3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prom3)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text; version=\"1.0.0\"")),
            Format::OpenMetrics
        );
        // Asked for, but less wanted than text.
        assert_eq!(
            Format::negotiate(Some("text/plain;q=1,application/openmetrics-text;q=0.5")),
            Format::Text
        );
        // Refused explicitly, an unknown version, or a malformed weight.
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=2.0.0")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=high")),
            Format::Text
        );
    }
}

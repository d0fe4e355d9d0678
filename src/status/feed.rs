//! The incident history as an Atom feed (`/history.atom`, RFC 4287): one entry per incident,
//! open and past, newest first, at most [`MAX_ENTRIES`]. An entry's id is a `tag:` URI that never
//! changes (`tag:canaryd,2026:<page slug>:incident:<id>`), its `updated` the incident's last
//! update, its content the whole timeline as plain text (the writer escapes it).

use std::time::SystemTime;

use atom_syndication::{Content, Entry, Feed, FixedDateTime, Generator, Link, Person, Text};

use super::html::{human_time, utc};
use super::model::{slug, Incident, Snapshot};

/// Most entries in the feed.
pub const MAX_ENTRIES: usize = 50;

fn fixed(t: SystemTime) -> FixedDateTime {
    utc(t).fixed_offset()
}

/// `https://status.example.com/x` when the page has a public address, `/x` otherwise.
pub(crate) fn page_url(snap: &Snapshot, path: &str) -> String {
    match &snap.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => path.to_string(),
    }
}

/// The feed's id prefix: `tag:canaryd,2026:<page slug>`.
fn tag(snap: &Snapshot) -> String {
    format!("tag:canaryd,2026:{}", slug(&snap.title))
}

/// The timeline as text, newest first: `Resolved — 4 Dec 2026, 13:00 UTC` then the text.
fn timeline(i: &Incident) -> String {
    let mut out = format!("Impact: {}\n", i.impact.as_str());
    if !i.components.is_empty() {
        out.push_str(&format!("Affected: {}\n", i.components.join(", ")));
    }
    for u in &i.updates {
        out.push_str(&format!(
            "\n{} — {}\n{}\n",
            u.state.label(),
            human_time(u.at),
            u.body
        ));
    }
    out
}

fn entry(snap: &Snapshot, i: &Incident) -> Entry {
    let mut e = Entry::default();
    e.set_title(Text::plain(format!("{} ({})", i.title, i.state.label())));
    e.set_id(format!("{}:incident:{}", tag(snap), i.id));
    e.set_updated(fixed(i.updated));
    e.set_published(Some(fixed(i.created)));
    e.set_links(vec![Link {
        href: page_url(snap, &format!("/incidents/{}", i.id)),
        rel: "alternate".into(),
        mime_type: Some("text/html".into()),
        ..Link::default()
    }]);
    if let Some(latest) = i.updates.first() {
        e.set_summary(Some(Text::plain(latest.body.clone())));
    }
    e.set_content(Some(Content {
        value: Some(timeline(i)),
        content_type: Some("text".into()),
        ..Content::default()
    }));
    e
}

/// The feed's XML.
pub fn atom(snap: &Snapshot) -> String {
    let mut incidents: Vec<&Incident> = snap.open.iter().chain(&snap.past).collect();
    incidents.sort_by(|a, b| b.updated.cmp(&a.updated).then(b.id.cmp(&a.id)));
    incidents.truncate(MAX_ENTRIES);

    let mut feed = Feed::default();
    feed.set_title(Text::plain(format!("{} incident history", snap.title)));
    feed.set_id(format!("{}:history", tag(snap)));
    let updated = incidents
        .iter()
        .map(|i| i.updated)
        .max()
        .unwrap_or(snap.generated);
    feed.set_updated(fixed(updated));
    feed.set_authors(vec![Person {
        name: snap.title.clone(),
        ..Person::default()
    }]);
    feed.set_generator(Some(Generator {
        value: "canaryd".into(),
        ..Generator::default()
    }));
    feed.set_links(vec![
        Link {
            href: page_url(snap, "/history.atom"),
            rel: "self".into(),
            mime_type: Some("application/atom+xml".into()),
            ..Link::default()
        },
        Link {
            href: page_url(snap, "/"),
            rel: "alternate".into(),
            mime_type: Some("text/html".into()),
            ..Link::default()
        },
    ]);
    feed.set_entries(incidents.iter().map(|i| entry(snap, i)).collect::<Vec<_>>());
    feed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::html::tests::evil_snapshot;

    #[test]
    fn the_feed_has_one_entry_per_incident_newest_first() {
        let snap = evil_snapshot();
        let xml = atom(&snap);
        let feed: Feed = xml.parse().expect("the feed parses back");
        assert_eq!(feed.entries.len(), 2);
        assert_eq!(
            feed.id,
            "tag:canaryd,2026:acme-script-alert-1-script:history"
        );
        let ids: Vec<&str> = feed.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "tag:canaryd,2026:acme-script-alert-1-script:incident:2",
                "tag:canaryd,2026:acme-script-alert-1-script:incident:1"
            ]
        );
        let e = &feed.entries[1];
        assert_eq!(e.links[0].href, "https://status.example.com/incidents/1");
        assert_eq!(e.updated.to_rfc3339(), "2026-12-04T02:00:00+00:00");
        let content = e.content.as_ref().unwrap().value.as_deref().unwrap();
        assert!(content.contains("Identified — 4 Dec 2026, 02:00 UTC\nline one <script>"));
        assert!(content.contains("Investigating — 4 Dec 2026, 01:00 UTC\nLooking"));
        assert!(e
            .title
            .as_str()
            .starts_with("Title <script>alert(1)</script>\"'&"));
    }

    #[test]
    fn planted_markup_is_escaped_in_the_xml() {
        let xml = atom(&evil_snapshot());
        assert!(!xml.contains("<script>"), "{xml}");
        assert!(xml.contains("&lt;script&gt;"));
    }

    #[test]
    fn links_are_relative_without_a_public_address() {
        let mut snap = evil_snapshot();
        snap.public_url = None;
        let feed: Feed = atom(&snap).parse().unwrap();
        assert_eq!(feed.entries[0].links[0].href, "/incidents/2");
        assert!(feed.entries[0].id.starts_with("tag:canaryd,2026:"));
    }
}

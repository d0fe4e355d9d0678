//! Every check kind, registered once: one line per kind in the `register!` list at the bottom.
//!
//! The list generates what needs each kind's static type: decoding the kind's key of a check
//! into its `Kind::Def`, the kind's schema under that key, and the list of keys. Everything
//! else about a kind lives in its own module (see [`super::kind`]).

use std::fmt;
use std::time::Duration;

use schemars::{Schema, SchemaGenerator};
use serde::de::MapAccess;
use serde_saphyr::Spanned;

use super::kind::{CheckKind, Kind, KindCx, Var};

/// A kind's definition as decoded, before validation.
pub trait AnyDef: fmt::Debug + Send + Sync {
    /// The kind's key.
    fn key(&self) -> &'static str;
    /// Where the key's value was written.
    fn at(&self) -> serde_saphyr::Location;
    /// Whether the kind allows `retries:` ([`Kind::RETRIES`]).
    fn retries(&self) -> bool;
    /// Validates the definition. `timing` turns the kind's default interval into the check's
    /// (interval, timeout), reporting their errors; it is called exactly once, also when the
    /// definition is invalid.
    fn validate(
        &self,
        cx: &mut KindCx<'_, '_>,
        timing: &mut dyn FnMut(&mut KindCx<'_, '_>, Duration) -> (Duration, Duration),
    ) -> (Option<CheckKind>, Duration, Duration);
}

/// One kind's definition as written.
pub struct DefOf<K: Kind>(pub Spanned<K::Def>);

impl<K: Kind> fmt::Debug for DefOf<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", K::KEY, self.0.value)
    }
}

impl<K: Kind> AnyDef for DefOf<K> {
    fn key(&self) -> &'static str {
        K::KEY
    }

    fn at(&self) -> serde_saphyr::Location {
        self.0.referenced
    }

    fn retries(&self) -> bool {
        K::RETRIES
    }

    fn validate(
        &self,
        cx: &mut KindCx<'_, '_>,
        timing: &mut dyn FnMut(&mut KindCx<'_, '_>, Duration) -> (Duration, Duration),
    ) -> (Option<CheckKind>, Duration, Duration) {
        let spec = K::validate(cx, &self.0.value);
        let default_interval = match &spec {
            Some(s) => K::default_interval(s, cx.defaults.interval),
            None => cx.defaults.interval,
        };
        let (interval, timeout) = timing(cx, default_interval);
        let kind = spec.map(|mut s| {
            K::fit_timeout(cx, &self.0.value, &mut s, timeout);
            CheckKind::new::<K>(s)
        });
        (kind, interval, timeout)
    }
}

/// Generates the per-kind tables from the list of kinds.
macro_rules! register {
    ($($kind:ty),* $(,)?) => {
        /// Every kind's key, in registration order.
        pub const KEYS: &[&str] = &[$(<$kind as Kind>::KEY),*];

        /// Decodes the value of `key` in a check when `key` is a kind's (`None`: not a kind).
        pub fn decode<'de, A: MapAccess<'de>>(
            key: &str,
            map: &mut A,
        ) -> Result<Option<Option<Box<dyn AnyDef>>>, A::Error> {
            $(
                if key == <$kind as Kind>::KEY {
                    // A null value is "not set", as for every other key.
                    let def: Option<Spanned<<$kind as Kind>::Def>> = map.next_value()?;
                    return Ok(Some(def.map(|d| Box::new(DefOf::<$kind>(d)) as Box<dyn AnyDef>)));
                }
            )*
            Ok(None)
        }

        /// Each kind's key with the schema of its definition.
        pub fn schemas(generator: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
            vec![$({
                let mut schema = generator.subschema_for::<Option<<$kind as Kind>::Def>>();
                schema.insert("description".into(), <$kind as Kind>::ABOUT.into());
                (<$kind as Kind>::KEY, schema)
            }),*]
        }

        /// The keys of the kinds that refuse `retries:` ([`Kind::RETRIES`] false).
        pub fn no_retries() -> Vec<&'static str> {
            let mut keys = Vec::new();
            $(
                if !<$kind as Kind>::RETRIES {
                    keys.push(<$kind as Kind>::KEY);
                }
            )*
            keys
        }

        /// Each kind's key with its alert variables (for the documentation).
        pub fn variables() -> Vec<(&'static str, &'static [Var])> {
            vec![$((<$kind as Kind>::KEY, <$kind as Kind>::VARS)),*]
        }
    };
}

register! {
    super::http::def::Http,
    super::tcp::Tcp,
    super::queue::def::Queue,
    super::heartbeat::def::Heartbeat,
}

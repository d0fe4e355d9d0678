//! What a check kind is, in one trait: [`Kind`].
//!
//! A kind's own file (or folder) holds everything about it: its YAML definition (`Kind::Def`,
//! a serde + schemars type, so the JSON Schema follows it), its validation into what the probe
//! runs (`Kind::validate`, errors located through the shared [`Ctx`]), its alert variables
//! declared once (`Kind::VARS`: name, type and how to read the value from a result; the
//! expression checker, the alert engine, `canaryd probe` and the reference's table (docs/reference.md) all read that
//! declaration), and its probe (`Kind::build`). `src/probe/mod.rs` registers every kind, one line
//! each; nothing else in canaryd names a kind.
//!
//! The rest of canaryd sees a validated kind as a [`CheckKind`] (a trait object over any
//! `Kind::Spec`), and a run's kind-specific detail as a [`Detail`] on the [`CheckResult`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_saphyr::{Location, Spanned};

use super::heartbeat::Book;
use super::{CheckResult, Probe, Reason};
use crate::config::ctx::Ctx;
use crate::config::expr::{Type, Value};
use crate::config::CheckDefaults;

/// One kind of check. Implemented by a unit type in the kind's own module and registered in
/// `src/probe/mod.rs` (the `register!` list).
pub trait Kind: Sized + Send + Sync + 'static {
    /// The YAML key that selects the kind (`http`), also its name in metrics and the API.
    const KEY: &'static str;
    /// What the kind checks, one line: the description of its key in the JSON Schema.
    const ABOUT: &'static str;
    /// The article before the key in messages ("an http check").
    const ARTICLE: &'static str = "a";
    /// Whether a check of this kind may set `retries:` (re-run a failed attempt within the
    /// interval). False for kinds whose result is a judgement of state rather than a probe of a
    /// target (a heartbeat: re-reading the same pings cannot change the verdict, and a retry
    /// would only delay a late job's page).
    const RETRIES: bool = true;
    /// Its alert variables beyond [`COMMON`], in the order error messages list them.
    const VARS: &'static [Var];
    /// The definition as written under [`Kind::KEY`]: `deny_unknown_fields`, doc comments
    /// (they become the schema's descriptions), `Spanned` where validation points.
    type Def: DeserializeOwned + JsonSchema + fmt::Debug + Send + Sync + 'static;
    /// The validated definition: what the probe runs.
    type Spec: fmt::Debug + Send + Sync + 'static;

    /// Validates a definition, reporting every error into `cx`; `None` when there were any.
    fn validate(cx: &mut KindCx<'_, '_>, def: &Self::Def) -> Option<Self::Spec>;

    /// The interval of a check that sets none (most kinds: the configured default).
    fn default_interval(_spec: &Self::Spec, default: Duration) -> Duration {
        default
    }

    /// Fits the kind's own time bounds into the check's `timeout`, once that is known (a
    /// connect timeout must not exceed it).
    fn fit_timeout(
        _cx: &mut KindCx<'_, '_>,
        _def: &Self::Def,
        _spec: &mut Self::Spec,
        _timeout: Duration,
    ) {
    }

    /// Whether a pattern variable's `<name>` names something this check has (a step, a
    /// queue); the message says what it has instead.
    fn check_param(_spec: &Self::Spec, _var: &Var, _param: &str) -> Result<(), String> {
        Ok(())
    }

    /// Step names, for the per-step metric families (empty for kinds without steps).
    fn step_names(_spec: &Self::Spec) -> Vec<String> {
        Vec::new()
    }

    /// Builds the probe (reading TLS files and the like: errors here are load errors).
    fn build(name: &str, spec: &Arc<Self::Spec>, env: &BuildEnv) -> Result<Arc<dyn Probe>, String>;
}

/// What validating one kind's definition needs.
pub struct KindCx<'c, 'a> {
    /// The file's error sink.
    pub ctx: &'c mut Ctx<'a>,
    /// The key path of the kind's definition (`checks[3].http`).
    pub key: String,
    /// Where the kind's key was written.
    pub at: Location,
    /// The `defaults:` of the daemon file.
    pub defaults: &'c CheckDefaults,
}

/// What building a probe may share with the daemon.
pub struct BuildEnv {
    /// The heartbeat state every heartbeat probe reads.
    pub heartbeats: Arc<Book>,
}

/// One alert variable: what `when` expressions and annotations may name.
#[derive(Debug)]
pub struct Var {
    /// The name; `<name>` stands for a step's or a queue's name (`step.<name>.duration`).
    pub name: &'static str,
    /// Its type in expressions.
    pub ty: Type,
    /// How a result gives its value.
    pub read: Read,
    /// One line for the documentation.
    pub about: &'static str,
}

/// How a variable's value is read from a result.
pub enum Read {
    /// The result's observation of the same name (every value there is a number: a
    /// duration in seconds, a boolean as 0 or 1).
    Observed,
    /// Computed from the result and the name as written, at `now` (the evaluation's clock).
    With(fn(&CheckResult, &str, SystemTime) -> Option<Value>),
}

impl fmt::Debug for Read {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Read::Observed => "Observed",
            Read::With(_) => "With(fn)",
        })
    }
}

impl Var {
    /// A variable read from the result's observation of the same name.
    pub const fn observed(name: &'static str, ty: Type, about: &'static str) -> Var {
        Var {
            name,
            ty,
            read: Read::Observed,
            about,
        }
    }

    /// When `name` is this variable: `Some("")` for a plain one, `Some(param)` for a pattern.
    pub fn matches<'n>(&self, name: &'n str) -> Option<&'n str> {
        match self.name.split_once("<name>") {
            None => (self.name == name).then_some(""),
            Some((head, tail)) => name
                .strip_prefix(head)
                .and_then(|rest| rest.strip_suffix(tail))
                .filter(|param| !param.is_empty()),
        }
    }

    /// The value for a result (`None`: unknown this run). `name` is the name as written.
    pub fn value(&self, result: &CheckResult, name: &str, now: SystemTime) -> Option<Value> {
        match self.read {
            Read::With(f) => f(result, name, now),
            Read::Observed => {
                let (_, v) = result.observations.iter().find(|(k, _)| k == name)?;
                Some(match self.ty {
                    Type::Duration => Value::Duration(Duration::from_secs_f64(v.clamp(0.0, 1e12))),
                    Type::Bool => Value::Bool(*v != 0.0),
                    Type::Number => Value::Number(*v),
                    Type::String => return None,
                })
            }
        }
    }
}

/// The variables of every check.
pub const COMMON: &[Var] = &[
    Var {
        name: "failed",
        ty: Type::Bool,
        read: Read::With(|r, _, _| Some(Value::Bool(!r.success))),
        about: "the run failed",
    },
    Var {
        name: "duration",
        ty: Type::Duration,
        read: Read::With(|r, _, _| Some(Value::Duration(r.duration))),
        about: "the run's wall time",
    },
    Var {
        name: "reason",
        ty: Type::String,
        read: Read::With(|r, _, _| {
            Some(Value::String(
                r.reason.map(Reason::as_str).unwrap_or("").to_string(),
            ))
        }),
        about: "the failure reason (\"\" when it passed)",
    },
];

/// The value of variable `name` (one of [`COMMON`] or of `vars`) for a result at `now`.
pub fn variable_of(
    vars: &[Var],
    result: &CheckResult,
    name: &str,
    now: SystemTime,
) -> Option<Value> {
    let var = COMMON
        .iter()
        .chain(vars)
        .find(|v| v.matches(name).is_some())?;
    var.value(result, name, now)
}

/// A run's kind-specific detail (what a queue check read), for the kind's own metric
/// families, the API and `canaryd probe`.
pub trait Detail: fmt::Debug + Send + Sync + 'static {
    /// Extra keys of the result in the API (`{"queues": [...]}`).
    fn json(&self) -> serde_json::Map<String, serde_json::Value>;
    /// Lines of the `canaryd probe` trace.
    fn trace(&self, out: &mut String);
    /// For the kind's own readers (metrics) to get their type back.
    fn as_any(&self) -> &dyn Any;
}

/// A validated kind, whichever it is.
#[derive(Debug)]
pub struct CheckKind(Box<dyn AnyKind>);

impl CheckKind {
    /// Wraps a validated spec of kind `K`.
    pub fn new<K: Kind>(spec: K::Spec) -> Self {
        CheckKind(Box::new(SpecOf::<K>(Arc::new(spec))))
    }

    /// The kind's key (`http`).
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The spec, when this is kind `K`.
    pub fn spec<K: Kind>(&self) -> Option<&Arc<K::Spec>> {
        self.0.as_any().downcast_ref::<SpecOf<K>>().map(|s| &s.0)
    }

    /// Step names, for metrics.
    pub fn step_names(&self) -> Vec<String> {
        self.0.step_names()
    }

    /// The variables this kind declares beyond [`COMMON`].
    pub fn vars(&self) -> &'static [Var] {
        self.0.vars()
    }

    /// The type of a variable, or why it is not one of this check's.
    pub fn var_type(&self, name: &str) -> Result<Type, String> {
        self.0.var_type(name)
    }

    /// The value of a variable for a result at `now`; `None` is unknown (see
    /// [`eval_cond`](crate::config::expr::eval_cond)).
    pub fn variable(&self, result: &CheckResult, name: &str, now: SystemTime) -> Option<Value> {
        variable_of(self.vars(), result, name, now)
    }

    /// Builds the probe.
    pub fn build(&self, name: &str, env: &BuildEnv) -> Result<Arc<dyn Probe>, String> {
        self.0.build(name, env)
    }
}

/// The object-safe face of a `Kind::Spec`.
trait AnyKind: fmt::Debug + Send + Sync {
    fn name(&self) -> &'static str;
    fn step_names(&self) -> Vec<String>;
    fn vars(&self) -> &'static [Var];
    fn var_type(&self, name: &str) -> Result<Type, String>;
    fn build(&self, name: &str, env: &BuildEnv) -> Result<Arc<dyn Probe>, String>;
    fn as_any(&self) -> &dyn Any;
}

struct SpecOf<K: Kind>(Arc<K::Spec>);

impl<K: Kind> fmt::Debug for SpecOf<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:?})", K::KEY, self.0)
    }
}

impl<K: Kind> AnyKind for SpecOf<K> {
    fn name(&self) -> &'static str {
        K::KEY
    }

    fn step_names(&self) -> Vec<String> {
        K::step_names(&self.0)
    }

    fn vars(&self) -> &'static [Var] {
        K::VARS
    }

    fn var_type(&self, name: &str) -> Result<Type, String> {
        for var in COMMON.iter().chain(K::VARS) {
            if let Some(param) = var.matches(name) {
                if !param.is_empty() {
                    K::check_param(&self.0, var, param)?;
                }
                return Ok(var.ty);
            }
        }
        Err(format!(
            "unknown variable {name:?} for {} {} check (known: {})",
            K::ARTICLE,
            K::KEY,
            known_list(K::VARS)
        ))
    }

    fn build(&self, name: &str, env: &BuildEnv) -> Result<Arc<dyn Probe>, String> {
        K::build(name, &self.0, env)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `failed, duration, reason, status, step.<name>.duration|status|failed`: the variables as
/// error messages list them, pattern variables of one prefix folded into one entry.
pub fn known_list(vars: &[Var]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut last_head: Option<&str> = None;
    for v in COMMON.iter().chain(vars) {
        let folded = v
            .name
            .contains("<name>")
            .then(|| v.name.rsplit_once('.'))
            .flatten();
        match (folded, last_head) {
            (Some((head, tail)), Some(prev)) if prev == head => {
                if let Some(entry) = out.last_mut() {
                    entry.push('|');
                    entry.push_str(tail);
                }
            }
            (Some((head, _)), _) => {
                out.push(v.name.to_string());
                last_head = Some(head);
            }
            (None, _) => {
                out.push(v.name.to_string());
                last_head = None;
            }
        }
    }
    out.join(", ")
}

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

/// Declares every kind's module and generates the tables that need each kind's static type
/// (`probe::kinds`: decoding a check's kind key, the kinds' schemas, keys and variables), from
/// one line per kind in `src/probe/mod.rs`.
macro_rules! register {
    ($($module:ident => $first:ident $(:: $rest:ident)*),* $(,)?) => {
        $(pub mod $module;)*

        /// Every registered kind: the tables that need each kind's static type.
        pub mod kinds {
            use schemars::{Schema, SchemaGenerator};
            use serde::de::MapAccess;
            use serde_saphyr::Spanned;

            use super::kind::{AnyDef, DefOf, Kind, Var};

            $crate::probe::kind::register!(@tables $(super::$first $(::$rest)*),*);
        }
    };
    (@tables $($kind:ty),*) => {
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
pub(crate) use register;

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: &[Var] = &[
        Var {
            name: "status",
            ty: Type::Number,
            read: Read::Observed,
            about: "",
        },
        Var {
            name: "step.<name>.duration",
            ty: Type::Duration,
            read: Read::Observed,
            about: "",
        },
        Var {
            name: "step.<name>.status",
            ty: Type::Number,
            read: Read::Observed,
            about: "",
        },
        Var {
            name: "queue.<name>.depth",
            ty: Type::Number,
            read: Read::Observed,
            about: "",
        },
    ];

    #[test]
    fn pattern_variables_match_a_non_empty_name_and_fold_in_messages() {
        assert_eq!(VARS[1].matches("step.login.duration"), Some("login"));
        assert_eq!(VARS[1].matches("step.a.b.duration"), Some("a.b"));
        assert_eq!(VARS[1].matches("step..duration"), None);
        assert_eq!(VARS[0].matches("status"), Some(""));
        assert_eq!(VARS[0].matches("statuses"), None);
        assert_eq!(
            known_list(VARS),
            "failed, duration, reason, status, step.<name>.duration|status, queue.<name>.depth"
        );
    }
}

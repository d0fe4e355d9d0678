//! Property tests of the `when` expression language: the parser and type checker never panic on
//! any text, a well-typed tree prints as text that parses back to the same tree, and evaluation
//! never panics and negates in Kleene's three-valued logic.

use std::time::Duration;

use canaryd::config::expr::{
    check, eval, eval_cond, parse, CmpOp, Expr, Type, Value, MAX_DEPTH, MAX_DURATION_DAYS, MAX_LEN,
    MAX_TERMS,
};
use proptest::prelude::*;

const CASES: u32 = 2_000;

fn vars(name: &str) -> Result<Type, String> {
    match name {
        "failed" | "unreachable" | "step.a.failed" => Ok(Type::Bool),
        "duration" | "oldest_age" | "step.a.duration" => Ok(Type::Duration),
        "depth" | "status" | "step.a.status" => Ok(Type::Number),
        "reason" | "failed_step" => Ok(Type::String),
        other => Err(format!("unknown variable {other:?}")),
    }
}

/// Text biased towards the grammar: every token kind, huge numbers, bad units, stray operators.
fn grammarish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("(".to_string()),
        Just(")".to_string()),
        Just("!".to_string()),
        Just("&&".to_string()),
        Just("||".to_string()),
        Just("==".to_string()),
        Just("!=".to_string()),
        Just("<".to_string()),
        Just("<=".to_string()),
        Just(">".to_string()),
        Just(">=".to_string()),
        Just("=".to_string()),
        Just("&".to_string()),
        Just("|".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        prop::sample::select(vec![
            "failed",
            "duration",
            "depth",
            "status",
            "reason",
            "step.a.status",
            "true",
            "false",
            "nope",
            "step.",
            "é",
            "_x-y:z",
        ])
        .prop_map(str::to_string),
        "'[^']{0,8}'",
        "\"[^\"]{0,8}\"",
        // Numbers up to 400 digits, with or without fractions and units (valid or not).
        (
            "[0-9]{1,400}",
            prop::option::of("\\.[0-9]{0,40}"),
            "(ms|s|m|h|d|x|e5|)?"
        )
            .prop_map(|(i, f, u)| format!("{i}{}{u}", f.unwrap_or_default())),
        "\\.[0-9]{1,5}(s|d)?",
        "[0-9.]{1,6}",
        Just(" ".to_string()),
    ];
    prop_oneof![
        prop::collection::vec(token, 0..60).prop_map(|t| t.join(" ")),
        // Nesting around the limit, and runs of terms around their limit.
        (0..(MAX_DEPTH * 2), 0..(MAX_DEPTH * 2), "(!|\\(|!\\()")
            .prop_map(|(open, close, p)| format!("{}failed{}", p.repeat(open), ")".repeat(close))),
        (
            0..(MAX_TERMS * 2),
            prop::sample::select(vec!["&&", "||", "=="])
        )
            .prop_map(|(n, op)| vec!["failed"; n.max(1)].join(op)),
    ]
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..100_000).prop_map(f64::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(f64::abs),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    let max = MAX_DURATION_DAYS * 86_400;
    prop_oneof![
        (0..max, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0..max).prop_map(Duration::from_secs),
        (0u64..100_000).prop_map(Duration::from_millis),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof!["[^']{0,12}", "[^\"]{0,12}"]
}

/// A well-typed condition (the trees `check` accepts).
fn condition() -> impl Strategy<Value = Expr> {
    let var = |names: &'static [&'static str]| {
        prop::sample::select(names).prop_map(|n| Expr::Var(n.to_string()))
    };
    let num = prop_oneof![
        var(&["depth", "status", "step.a.status"]),
        number().prop_map(|n| Expr::Lit(Value::Number(n)))
    ];
    let dur = prop_oneof![
        var(&["duration", "oldest_age", "step.a.duration"]),
        duration().prop_map(|d| Expr::Lit(Value::Duration(d)))
    ];
    let text = prop_oneof![
        var(&["reason", "failed_step"]),
        string().prop_map(|s| Expr::Lit(Value::String(s)))
    ];
    let any_op = prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ]);
    let eq_op = prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne]);
    let leaf = prop_oneof![
        var(&["failed", "unreachable", "step.a.failed"]),
        any::<bool>().prop_map(|b| Expr::Lit(Value::Bool(b))),
        (any_op.clone(), num.clone(), num).prop_map(|(o, a, b)| Expr::Cmp(o, a.into(), b.into())),
        (any_op, dur.clone(), dur).prop_map(|(o, a, b)| Expr::Cmp(o, a.into(), b.into())),
        (eq_op.clone(), text.clone(), text).prop_map(|(o, a, b)| Expr::Cmp(o, a.into(), b.into())),
    ];
    leaf.prop_recursive(8, 96, 2, move |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(e.into())),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(a.into(), b.into())),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Or(a.into(), b.into())),
            (eq_op.clone(), inner.clone(), inner).prop_map(|(o, a, b)| Expr::Cmp(
                o,
                a.into(),
                b.into()
            )),
        ]
    })
}

/// Operands, and the nesting the parser counts: `!` always, parentheses the printer adds.
fn terms(e: &Expr) -> usize {
    match e {
        Expr::Lit(_) | Expr::Var(_) => 1,
        Expr::Not(a) => terms(a),
        Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) => terms(a) + terms(b),
    }
}

fn depth(e: &Expr) -> usize {
    match e {
        Expr::Lit(_) | Expr::Var(_) => 0,
        Expr::Not(a) => 1 + depth(a),
        // An upper bound: the printer adds at most one pair of parentheses per level.
        Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) => 1 + depth(a).max(depth(b)),
    }
}

/// A value for every variable, or none; sometimes of the wrong type (must not panic either).
fn assignment() -> impl Strategy<Value = Vec<Option<Value>>> {
    let value = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(Value::Number),
        duration().prop_map(Value::Duration),
        string().prop_map(Value::String),
    ];
    prop::collection::vec(prop::option::of(value), 11)
}

const NAMES: [&str; 11] = [
    "failed",
    "unreachable",
    "step.a.failed",
    "duration",
    "oldest_age",
    "step.a.duration",
    "depth",
    "status",
    "step.a.status",
    "reason",
    "failed_step",
];

fn lookup(values: &[Option<Value>]) -> impl Fn(&str) -> Option<Value> + '_ {
    move |name| {
        let i = NAMES.iter().position(|n| *n == name)?;
        values[i].clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn check_never_panics_on_any_text(src in any::<String>()) {
        let _ = check(&src, &vars);
    }

    #[test]
    fn check_never_panics_on_grammar_like_text(src in grammarish(), values in assignment()) {
        let limited = src.chars().count() <= MAX_LEN;
        match check(&src, &vars) {
            Ok(e) => {
                prop_assert!(limited);
                let _ = eval(&e, &lookup(&values));
                let _ = eval_cond(&e, &lookup(&values));
                let printed = e.to_string();
                prop_assert_eq!(parse(&printed), Ok(e), "printed as {}", printed);
            }
            Err(err) => prop_assert!(err.offset <= src.chars().count(), "{:?}", err),
        }
    }

    #[test]
    fn a_well_typed_tree_prints_as_text_that_parses_back(e in condition()) {
        prop_assume!(terms(&e) <= MAX_TERMS && depth(&e) <= MAX_DEPTH);
        let printed = e.to_string();
        prop_assume!(printed.chars().count() <= MAX_LEN);
        prop_assert_eq!(check(&printed, &vars), Ok(e), "printed as {}", printed);
    }

    #[test]
    fn not_is_the_kleene_negation(e in condition(), values in assignment()) {
        let look = lookup(&values);
        let a = eval_cond(&e, &look);
        prop_assert_eq!(eval_cond(&Expr::Not(Box::new(e.clone())), &look), a.map(|b| !b));
        // The same through text, as a configuration would write it.
        prop_assume!(terms(&e) <= MAX_TERMS && depth(&e) < MAX_DEPTH);
        let negated = parse(&format!("!({e})")).unwrap();
        prop_assert_eq!(eval_cond(&negated, &look), a.map(|b| !b));
    }
}

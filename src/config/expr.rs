//! The `when` expression language of alert rules.
//!
//! `failed`, `duration > 3s`, `depth > 0 && processed_rate == 0`, `step.submit.status != 200`.
//! Comparisons (`== != < <= > >=`), `&& || !`, parentheses, numbers, duration literals
//! (`250ms`, `3s`, `5m`, `1h`, `1d`), strings (`'...'` or `"..."`), `true`/`false` and variables.
//! Expressions are parsed and type-checked when the configuration loads, against the variables
//! the check kind provides, so a typo is a `file:line:col` error, not a silent never-firing alert.
//!
//! Every expression is bounded before anything recurses over it: at most [`MAX_LEN`] characters,
//! [`MAX_DEPTH`] levels of parentheses and `!`, and [`MAX_TERMS`] operands; numbers must be
//! finite and durations at most [`MAX_DURATION_DAYS`] days. So the parser, the type checker and
//! the evaluator recurse at most a few hundred frames deep on any tree [`parse`] returns, and a
//! configuration can never overflow a stack (tokio workers have 2 MiB) or panic on a literal.

use std::fmt;
use std::time::Duration;

/// Longest expression accepted, in characters.
pub const MAX_LEN: usize = 4096;
/// Deepest nesting accepted: every `(` and every `!` opens one level.
pub const MAX_DEPTH: usize = 64;
/// Most operands (literals and variables) one expression may have.
pub const MAX_TERMS: usize = 128;
/// Longest duration literal accepted, in days (100 years of 365 days).
pub const MAX_DURATION_DAYS: u64 = 36_500;
const MAX_DURATION_NANOS: u128 = MAX_DURATION_DAYS as u128 * 86_400 * 1_000_000_000;

/// The type of a value in an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// `true`/`false`
    Bool,
    /// A plain number.
    Number,
    /// A length of time.
    Duration,
    /// Text (`reason`, `failed_step`).
    String,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Bool => "boolean",
            Type::Number => "number",
            Type::Duration => "duration",
            Type::String => "string",
        })
    }
}

/// A value produced by evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Boolean.
    Bool(bool),
    /// Number (also used for durations, in seconds).
    Number(f64),
    /// Duration.
    Duration(Duration),
    /// String.
    String(String),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// A variable (dotted name).
    Var(String),
    /// `!e`
    Not(Box<Expr>),
    /// `a && b`
    And(Box<Expr>, Box<Expr>),
    /// `a || b`
    Or(Box<Expr>, Box<Expr>),
    /// `a <op> b`
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
}

/// A parse or type error, with the 0-based character offset inside the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Character offset of the problem in the expression text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Dur(Duration),
    Str(String),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |offset, message: String| ExprError { offset, message };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let num: String = chars[start..i].iter().collect();
            let unit_start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit: String = chars[unit_start..i].iter().collect();
            if unit.is_empty() {
                let n: f64 = num
                    .parse()
                    .map_err(|_| err(start, format!("invalid number {num:?}")))?;
                if !n.is_finite() {
                    return Err(err(
                        start,
                        format!("number {} is out of range", short(&num)),
                    ));
                }
                out.push((start, Tok::Num(n)));
            } else {
                let unit_nanos: u128 = match unit.as_str() {
                    "ms" => 1_000_000,
                    "s" => 1_000_000_000,
                    "m" => 60_000_000_000,
                    "h" => 3_600_000_000_000,
                    "d" => 86_400_000_000_000,
                    _ => {
                        return Err(err(
                            unit_start,
                            format!("unknown duration unit {unit:?} (use ms, s, m, h or d)"),
                        ))
                    }
                };
                let nanos = duration_nanos(&num, unit_nanos)
                    .ok_or_else(|| err(start, format!("invalid number {:?}", short(&num))))?;
                if nanos > MAX_DURATION_NANOS {
                    return Err(err(
                        start,
                        format!(
                            "duration {}{unit} is out of range (at most {MAX_DURATION_DAYS}d, 100 years)",
                            short(&num)
                        ),
                    ));
                }
                let secs = (nanos / 1_000_000_000) as u64;
                let sub = (nanos % 1_000_000_000) as u32;
                out.push((start, Tok::Dur(Duration::new(secs, sub))));
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.' | '-' | ':'))
            {
                i += 1;
            }
            out.push((start, Tok::Ident(chars[start..i].iter().collect())));
            continue;
        }
        if c == '\'' || c == '"' {
            i += 1;
            let s0 = i;
            while i < chars.len() && chars[i] != c {
                i += 1;
            }
            if i == chars.len() {
                return Err(err(start, "unterminated string".into()));
            }
            out.push((start, Tok::Str(chars[s0..i].iter().collect())));
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = match two.as_str() {
            "&&" => Some("&&"),
            "||" => Some("||"),
            "==" => Some("=="),
            "!=" => Some("!="),
            "<=" => Some("<="),
            ">=" => Some(">="),
            _ => None,
        };
        if let Some(op) = op {
            out.push((start, Tok::Op(op)));
            i += 2;
            continue;
        }
        let tok = match c {
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '!' => Tok::Op("!"),
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '=' => return Err(err(start, "use == to compare".into())),
            '&' => return Err(err(start, "use && for and".into())),
            '|' => return Err(err(start, "use || for or".into())),
            _ => return Err(err(start, format!("unexpected character {c:?}"))),
        };
        out.push((start, tok));
        i += 1;
    }
    Ok(out)
}

/// The first characters of a long literal, for messages.
fn short(num: &str) -> String {
    if num.chars().count() > 24 {
        format!("{}…", num.chars().take(24).collect::<String>())
    } else {
        num.to_string()
    }
}

/// `digits[.digits]` times a unit, in whole nanoseconds (exact: no floating point, so a duration
/// printed by [`Value`]'s `Display` reads back as the same value). `None` when `num` is not a
/// decimal number; `Some(u128::MAX)` when it is far beyond any limit.
fn duration_nanos(num: &str, unit_nanos: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    // 30 digits exceed u128 when multiplied by a unit, and every limit long before that.
    if int.len() > 30 {
        return Some(u128::MAX);
    }
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let whole = whole.saturating_mul(unit_nanos);
    // Digits past the 24th are below a nanosecond for every unit (a day is 8.64e13 ns).
    let frac = &frac[..frac.len().min(24)];
    let part = if frac.is_empty() {
        0
    } else {
        let f: u128 = frac.parse().ok()?;
        f * unit_nanos / 10u128.pow(frac.len() as u32)
    };
    Some(whole.saturating_add(part))
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    /// Open parentheses and `!` around the current position.
    depth: usize,
    /// Operands read so far.
    terms: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn offset(&self) -> usize {
        self.toks.get(self.pos).map(|(o, _)| *o).unwrap_or(self.end)
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn or(&mut self) -> Result<(usize, Expr), ExprError> {
        let (o, mut e) = self.and()?;
        while self.eat_op("||") {
            let (_, r) = self.and()?;
            e = Expr::Or(Box::new(e), Box::new(r));
        }
        Ok((o, e))
    }
    fn and(&mut self) -> Result<(usize, Expr), ExprError> {
        let (o, mut e) = self.not()?;
        while self.eat_op("&&") {
            let (_, r) = self.not()?;
            e = Expr::And(Box::new(e), Box::new(r));
        }
        Ok((o, e))
    }
    /// Enters one level of nesting (a `(` or a `!` at offset `o`).
    fn enter(&mut self, o: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError {
                offset: o,
                message: format!(
                    "expression nests deeper than {MAX_DEPTH} (parentheses and ! count)"
                ),
            });
        }
        Ok(())
    }
    fn not(&mut self) -> Result<(usize, Expr), ExprError> {
        let o = self.offset();
        if self.eat_op("!") {
            self.enter(o)?;
            let (_, e) = self.not()?;
            self.depth -= 1;
            return Ok((o, Expr::Not(Box::new(e))));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<(usize, Expr), ExprError> {
        let (o, l) = self.primary()?;
        let op = match self.peek() {
            Some(Tok::Op("==")) => CmpOp::Eq,
            Some(Tok::Op("!=")) => CmpOp::Ne,
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            _ => return Ok((o, l)),
        };
        self.pos += 1;
        let (_, r) = self.primary()?;
        Ok((o, Expr::Cmp(op, Box::new(l), Box::new(r))))
    }
    fn primary(&mut self) -> Result<(usize, Expr), ExprError> {
        let o = self.offset();
        let tok = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        if matches!(
            tok,
            Some(Tok::Num(_) | Tok::Dur(_) | Tok::Str(_) | Tok::Ident(_))
        ) {
            self.terms += 1;
            if self.terms > MAX_TERMS {
                return Err(ExprError {
                    offset: o,
                    message: format!("expression has more than {MAX_TERMS} terms"),
                });
            }
        }
        let e = match tok {
            Some(Tok::Num(n)) => Expr::Lit(Value::Number(n)),
            Some(Tok::Dur(d)) => Expr::Lit(Value::Duration(d)),
            Some(Tok::Str(s)) => Expr::Lit(Value::String(s)),
            Some(Tok::Ident(id)) if id == "true" => Expr::Lit(Value::Bool(true)),
            Some(Tok::Ident(id)) if id == "false" => Expr::Lit(Value::Bool(false)),
            Some(Tok::Ident(id)) => Expr::Var(id),
            Some(Tok::LParen) => {
                self.enter(o)?;
                let (_, e) = self.or()?;
                self.depth -= 1;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(ExprError {
                        offset: self.offset(),
                        message: "expected )".into(),
                    });
                }
                self.pos += 1;
                e
            }
            Some(t) => {
                return Err(ExprError {
                    offset: o,
                    message: format!("unexpected {}", describe(&t)),
                });
            }
            None => {
                return Err(ExprError {
                    offset: o,
                    message: "unexpected end of expression".into(),
                })
            }
        };
        Ok((o, e))
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Op(o) => format!("operator {o}"),
        Tok::RParen => ")".into(),
        Tok::LParen => "(".into(),
        other => format!("{other:?}"),
    }
}

/// Parses an expression (syntax only).
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let len = src.chars().count();
    if len > MAX_LEN {
        return Err(ExprError {
            offset: MAX_LEN,
            message: format!("expression is longer than {MAX_LEN} characters ({len})"),
        });
    }
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: len,
        depth: 0,
        terms: 0,
    };
    let (_, e) = p.or()?;
    if p.pos < p.toks.len() {
        let (o, t) = &p.toks[p.pos];
        return Err(ExprError {
            offset: *o,
            message: format!("unexpected {} after a complete expression", describe(t)),
        });
    }
    Ok(e)
}

/// Parses and type-checks an expression that must yield a boolean. `var_type` returns the type
/// of a variable, or `Err(hint)` when the check kind has no such variable.
pub fn check(
    src: &str,
    var_type: &dyn Fn(&str) -> Result<Type, String>,
) -> Result<Expr, ExprError> {
    let e = parse(src)?;
    let t = type_of(&e, src, var_type)?;
    if t != Type::Bool {
        return Err(ExprError {
            offset: 0,
            message: format!(
                "expression is a {t}, not a condition (compare it, e.g. `{src} > ...`)"
            ),
        });
    }
    Ok(e)
}

fn var_offset(src: &str, name: &str) -> usize {
    src.find(name)
        .map(|b| src[..b].chars().count())
        .unwrap_or(0)
}

fn type_of(
    e: &Expr,
    src: &str,
    var_type: &dyn Fn(&str) -> Result<Type, String>,
) -> Result<Type, ExprError> {
    match e {
        Expr::Lit(Value::Bool(_)) => Ok(Type::Bool),
        Expr::Lit(Value::Number(_)) => Ok(Type::Number),
        Expr::Lit(Value::Duration(_)) => Ok(Type::Duration),
        Expr::Lit(Value::String(_)) => Ok(Type::String),
        Expr::Var(name) => var_type(name).map_err(|hint| ExprError {
            offset: var_offset(src, name),
            message: hint,
        }),
        Expr::Not(inner) => expect_bool(inner, src, var_type, "!"),
        Expr::And(a, b) | Expr::Or(a, b) => {
            let op = if matches!(e, Expr::And(..)) {
                "&&"
            } else {
                "||"
            };
            expect_bool(a, src, var_type, op)?;
            expect_bool(b, src, var_type, op)
        }
        Expr::Cmp(op, a, b) => {
            let (ta, tb) = (type_of(a, src, var_type)?, type_of(b, src, var_type)?);
            if ta != tb {
                return Err(ExprError {
                    offset: 0,
                    message: format!("cannot compare a {ta} with a {tb}"),
                });
            }
            if matches!(ta, Type::Bool | Type::String) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(ExprError {
                    offset: 0,
                    message: format!("a {ta} can only be compared with == or !="),
                });
            }
            Ok(Type::Bool)
        }
    }
}

fn expect_bool(
    e: &Expr,
    src: &str,
    var_type: &dyn Fn(&str) -> Result<Type, String>,
    op: &str,
) -> Result<Type, ExprError> {
    let t = type_of(e, src, var_type)?;
    if t != Type::Bool {
        return Err(ExprError {
            offset: 0,
            message: format!("{op} needs a condition, got a {t}"),
        });
    }
    Ok(Type::Bool)
}

/// Evaluates a type-checked expression to a value; `None` when it reads a variable that has no
/// value this run. Conditions are evaluated with [`eval_cond`], which gives *unknown* its logic.
pub fn eval(e: &Expr, lookup: &dyn Fn(&str) -> Option<Value>) -> Option<Value> {
    match e {
        Expr::Lit(v) => Some(v.clone()),
        Expr::Var(name) => lookup(name),
        _ => eval_cond(e, lookup).map(Value::Bool),
    }
}

/// Evaluates a type-checked condition with three values: `Some(true)`, `Some(false)`, or `None`
/// for *unknown*, when the outcome depends on a variable that has no value (a rate on the first
/// run, `cert_expires_in` without TLS). Unknown follows Kleene's logic: `!unknown` is unknown,
/// `unknown && false` is false, `unknown || true` is true; a comparison with an unknown side is
/// unknown. So `x != 1` and `!(x == 1)` always agree.
pub fn eval_cond(e: &Expr, lookup: &dyn Fn(&str) -> Option<Value>) -> Option<bool> {
    match e {
        Expr::Lit(Value::Bool(b)) => Some(*b),
        Expr::Lit(_) => None,
        Expr::Var(name) => match lookup(name)? {
            Value::Bool(b) => Some(b),
            _ => None,
        },
        Expr::Not(inner) => eval_cond(inner, lookup).map(|b| !b),
        Expr::And(a, b) => match (eval_cond(a, lookup), eval_cond(b, lookup)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (eval_cond(a, lookup), eval_cond(b, lookup)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::Cmp(op, a, b) => {
            let (a, b) = (eval(a, lookup)?, eval(b, lookup)?);
            let ord = match (&a, &b) {
                (Value::Number(x), Value::Number(y)) => x.partial_cmp(y),
                (Value::Duration(x), Value::Duration(y)) => x.partial_cmp(y),
                (Value::String(x), Value::String(y)) => x.partial_cmp(y),
                (Value::Bool(x), Value::Bool(y)) => x.partial_cmp(y),
                _ => None,
            }?;
            use std::cmp::Ordering::*;
            Some(match op {
                CmpOp::Eq => ord == Equal,
                CmpOp::Ne => ord != Equal,
                CmpOp::Lt => ord == Less,
                CmpOp::Le => ord != Greater,
                CmpOp::Gt => ord == Greater,
                CmpOp::Ge => ord != Less,
            })
        }
    }
}

impl Expr {
    /// The variables the expression reads, in order of first appearance, without repeats.
    pub fn variables(&self) -> Vec<&str> {
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
            match e {
                Expr::Lit(_) => {}
                Expr::Var(v) => {
                    if !out.contains(&v.as_str()) {
                        out.push(v);
                    }
                }
                Expr::Not(a) => walk(a, out),
                Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }
}

/// Prints the value as an expression literal that [`parse`] reads back as the same value:
/// `true`, `0.25` (shortest exact form), `90s`, `1.5s`, `'text'`. Numbers below zero, NaN and
/// infinities (which variables may hold, but no literal can) print as Rust prints them. The
/// alternate form (`{:#}`) is for people: `0.250`, `1h 30m`, `text` without quotes.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return match self {
                Value::Bool(b) => write!(f, "{b}"),
                Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => {
                    write!(f, "{}", *n as i64)
                }
                Value::Number(n) => write!(f, "{n:.3}"),
                Value::Duration(d) if d.as_secs() >= 60 => write!(
                    f,
                    "{}",
                    humantime::format_duration(Duration::from_secs(d.as_secs()))
                ),
                Value::Duration(d) => write!(f, "{:.3}s", d.as_secs_f64()),
                Value::String(s) => write!(f, "{s}"),
            };
        }
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            // Rust prints the shortest decimal that reads back as the same f64, never an exponent.
            Value::Number(n) => write!(f, "{n}"),
            Value::Duration(d) => {
                let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
                if nanos != 0 {
                    let frac = format!("{nanos:09}");
                    return write!(f, "{secs}.{}s", frac.trim_end_matches('0'));
                }
                match secs {
                    0 => write!(f, "0s"),
                    s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
                    s if s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
                    s if s % 60 == 0 => write!(f, "{}m", s / 60),
                    s => write!(f, "{s}s"),
                }
            }
            // A string never holds both quotes: a literal ends at its own quote character.
            Value::String(s) if s.contains('\'') => write!(f, "\"{s}\""),
            Value::String(s) => write!(f, "'{s}'"),
        }
    }
}

impl CmpOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// Prints the expression so that [`parse`] reads it back as the same tree: parentheses exactly
/// where precedence (`||` < `&&` < `!` < comparison) or grouping on the right needs them.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Binding levels: what may appear without parentheses in a position.
        const OR: u8 = 0;
        const AND: u8 = 1;
        const NOT: u8 = 2;
        const OPERAND: u8 = 3;
        fn level(e: &Expr) -> u8 {
            match e {
                Expr::Or(..) => OR,
                Expr::And(..) => AND,
                Expr::Not(_) | Expr::Cmp(..) => NOT,
                Expr::Lit(_) | Expr::Var(_) => OPERAND,
            }
        }
        fn put(e: &Expr, min: u8, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if level(e) < min {
                f.write_str("(")?;
                put(e, OR, f)?;
                return f.write_str(")");
            }
            match e {
                Expr::Lit(v) => write!(f, "{v}"),
                Expr::Var(name) => f.write_str(name),
                Expr::Not(inner) => {
                    f.write_str("!")?;
                    put(inner, NOT, f)
                }
                // Left-associative: a chain nests on the left, a group on the right is explicit.
                Expr::Or(a, b) => {
                    put(a, OR, f)?;
                    f.write_str(" || ")?;
                    put(b, AND, f)
                }
                Expr::And(a, b) => {
                    put(a, AND, f)?;
                    f.write_str(" && ")?;
                    put(b, NOT, f)
                }
                Expr::Cmp(op, a, b) => {
                    put(a, OPERAND, f)?;
                    write!(f, " {} ", op.as_str())?;
                    put(b, OPERAND, f)
                }
            }
        }
        put(self, OR, f)
    }
}

/// Whether a value counts as true (only `Bool(true)` does).
pub fn truthy(v: Option<Value>) -> bool {
    matches!(v, Some(Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Result<Type, String> {
        match name {
            "failed" => Ok(Type::Bool),
            "duration" | "oldest_age" => Ok(Type::Duration),
            "depth" | "processed_rate" | "status" => Ok(Type::Number),
            "reason" => Ok(Type::String),
            other => Err(format!("unknown variable {other:?}")),
        }
    }

    #[test]
    fn parses_and_evaluates_design_examples() {
        let e = check("depth > 0 && processed_rate == 0", &vars).unwrap();
        let lookup = |n: &str| match n {
            "depth" => Some(Value::Number(5.0)),
            "processed_rate" => Some(Value::Number(0.0)),
            _ => None,
        };
        assert!(truthy(eval(&e, &lookup)));
        let e = check("duration > 3s", &vars).unwrap();
        assert!(truthy(eval(&e, &|_| Some(Value::Duration(
            Duration::from_millis(3500)
        )))));
        assert!(!truthy(eval(&e, &|_| Some(Value::Duration(
            Duration::from_millis(2500)
        )))));
        let e = check("!failed || (reason == 'timeout')", &vars).unwrap();
        assert!(truthy(
            eval(&e, &|n| (n == "failed").then_some(Value::Bool(false)))
        ));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let err = check("duration > 3 s", &vars).unwrap_err();
        assert_eq!(err.offset, 13, "{err:?}");
        let err = check("depht > 0", &vars).unwrap_err();
        assert_eq!(
            (err.offset, err.message.as_str()),
            (0, "unknown variable \"depht\"")
        );
        assert!(check("duration > 3", &vars)
            .unwrap_err()
            .message
            .contains("cannot compare a duration with a number"));
        assert!(check("depth", &vars)
            .unwrap_err()
            .message
            .contains("not a condition"));
        assert!(check("depth = 1", &vars)
            .unwrap_err()
            .message
            .contains("use =="));
        assert!(check("(failed", &vars)
            .unwrap_err()
            .message
            .contains("expected )"));
        assert!(check("", &vars)
            .unwrap_err()
            .message
            .contains("unexpected end"));
    }

    #[test]
    fn huge_literals_are_errors_not_panics() {
        let err = check("duration > 99999999999999999999d", &vars).unwrap_err();
        assert_eq!(err.offset, 11, "{err:?}");
        assert!(
            err.message.contains("out of range (at most 36500d"),
            "{err:?}"
        );
        let err = check(&format!("depth > {}", "9".repeat(400)), &vars).unwrap_err();
        assert_eq!(err.offset, 8, "{err:?}");
        assert!(err.message.contains("is out of range"), "{err:?}");
        assert!(check("duration > 36500d", &vars).is_ok());
        assert!(check("duration > 36500.000000001d", &vars).is_err());
        assert!(check("duration > 876000h", &vars).is_ok());
        assert!(check("duration > 1.2.3s", &vars)
            .unwrap_err()
            .message
            .contains("invalid number"));
        assert!(check(&format!("duration > 0.{}1s", "0".repeat(100)), &vars).is_ok());
    }

    #[test]
    fn duration_literals_are_exact() {
        let d = |src: &str| match parse(&format!("duration > {src}")).unwrap() {
            Expr::Cmp(_, _, b) => match *b {
                Expr::Lit(Value::Duration(d)) => d,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(d("0.1s"), Duration::from_millis(100));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d(".5ms"), Duration::from_micros(500));
        assert_eq!(d("0.000000001s"), Duration::from_nanos(1));
        assert_eq!(d("36500d"), Duration::from_secs(36_500 * 86_400));
    }

    #[test]
    fn limits_on_length_depth_and_terms() {
        let long = format!("failed{}", " ".repeat(MAX_LEN));
        let err = parse(&long).unwrap_err();
        assert_eq!(err.offset, MAX_LEN);
        assert!(
            err.message.contains("longer than 4096 characters"),
            "{err:?}"
        );

        let ok = format!("{}failed{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(check(&ok, &vars).is_ok());
        let deep = format!(
            "{}failed{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        let err = check(&deep, &vars).unwrap_err();
        assert_eq!(err.offset, MAX_DEPTH, "the 65th parenthesis");
        assert_eq!(
            err.message,
            "expression nests deeper than 64 (parentheses and ! count)"
        );
        let nots = format!("failed || {}failed", "!".repeat(MAX_DEPTH + 1));
        assert_eq!(check(&nots, &vars).unwrap_err().offset, 10 + MAX_DEPTH);
        // Siblings do not add up: depth is nesting, not a count.
        let wide = vec!["(((failed)))"; 100].join(" && ");
        assert!(check(&wide, &vars).is_ok());

        let terms = vec!["failed"; MAX_TERMS].join("||");
        assert!(check(&terms, &vars).is_ok());
        let err = check(&format!("{terms}||failed"), &vars).unwrap_err();
        assert_eq!(err.offset, terms.len() + 2);
        assert_eq!(err.message, "expression has more than 128 terms");
    }

    /// The deepest trees the limits allow: parsed on a quarter of a tokio worker's 2 MiB stack
    /// (debug build), then type-checked, evaluated, printed and dropped on 256 KiB.
    #[test]
    fn deepest_allowed_trees_run_on_a_small_stack() {
        let chain = vec!["failed"; MAX_TERMS].join(" && ");
        let half = MAX_DEPTH / 2;
        let srcs = vec![
            format!("{}({chain})", "!".repeat(MAX_DEPTH - 1)),
            format!("{}failed{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH)),
            format!(
                "{}{}{chain}{}",
                "!".repeat(half),
                "(".repeat(half),
                ")".repeat(half)
            ),
            format!(
                "{}failed{}",
                "(failed || ".repeat(MAX_DEPTH),
                ")".repeat(MAX_DEPTH)
            ),
        ];
        let small = |stack: usize, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .stack_size(stack)
                .spawn(f)
                .unwrap()
                .join()
                .expect("no stack overflow")
        };
        for src in srcs {
            let (tx, rx) = std::sync::mpsc::channel();
            small(
                512 * 1024,
                Box::new(move || tx.send(parse(&src).unwrap()).unwrap()),
            );
            let e = rx.recv().unwrap();
            small(
                256 * 1024,
                Box::new(move || {
                    assert_eq!(type_of(&e, "", &vars), Ok(Type::Bool));
                    assert_eq!(e.variables(), vec!["failed"]);
                    assert_eq!(eval_cond(&e, &|_| None), None);
                    let t = eval_cond(&e, &|_| Some(Value::Bool(true))).unwrap();
                    let f = eval_cond(&e, &|_| Some(Value::Bool(false))).unwrap();
                    assert!(t != f || matches!(e, Expr::Or(..)));
                    let printed = e.to_string();
                    assert!(printed.chars().count() <= MAX_LEN, "{printed}");
                    drop(e);
                }),
            );
        }
    }

    #[test]
    fn display_prints_what_parses_back() {
        for src in [
            "a || b && c",
            "(a || b) && c",
            "a || (b || c)",
            "a && (b && c)",
            "!(a && b)",
            "!a == b",
            "(!a) == b",
            "(a == b) == c",
            "a == (b == c)",
            "x > 1.25 && d <= 90s || s != \"it's\" && t == 'say \"hi\"'",
            "d > 0.000000001s && d < 36500d && d != 1.5h && n == 0.1",
            "!!!(a)",
        ] {
            let e = parse(src).unwrap();
            let printed = e.to_string();
            assert_eq!(parse(&printed), Ok(e), "{src} printed as {printed}");
        }
        assert_eq!(parse("(a || b) && c").unwrap().to_string(), "(a || b) && c");
        assert_eq!(parse("d > 90s").unwrap().to_string(), "d > 90s");
        assert_eq!(parse("d > 120s").unwrap().to_string(), "d > 2m");
        assert_eq!(
            format!("{:#}", Value::Duration(Duration::from_secs(5400))),
            "1h 30m"
        );
        assert_eq!(format!("{:#}", Value::String("x".into())), "x");
    }
}

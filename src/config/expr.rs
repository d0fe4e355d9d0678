//! The `when` expression language of alert rules.
//!
//! `failed`, `duration > 3s`, `depth > 0 && processed_rate == 0`, `step.submit.status != 200`.
//! Comparisons (`== != < <= > >=`), `&& || !`, parentheses, numbers, duration literals
//! (`250ms`, `3s`, `5m`, `1h`, `1d`), strings (`'...'` or `"..."`), `true`/`false` and variables.
//! Expressions are parsed and type-checked when the configuration loads, against the variables
//! the check kind provides, so a typo is a `file:line:col` error, not a silent never-firing alert.

use std::fmt;
use std::time::Duration;

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
            let n: f64 = num
                .parse()
                .map_err(|_| err(start, format!("invalid number {num:?}")))?;
            if unit.is_empty() {
                out.push((start, Tok::Num(n)));
            } else {
                let secs = match unit.as_str() {
                    "ms" => n / 1000.0,
                    "s" => n,
                    "m" => n * 60.0,
                    "h" => n * 3600.0,
                    "d" => n * 86400.0,
                    _ => {
                        return Err(err(
                            unit_start,
                            format!("unknown duration unit {unit:?} (use ms, s, m, h or d)"),
                        ))
                    }
                };
                out.push((start, Tok::Dur(Duration::from_secs_f64(secs))));
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

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
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
    fn not(&mut self) -> Result<(usize, Expr), ExprError> {
        let o = self.offset();
        if self.eat_op("!") {
            let (_, e) = self.not()?;
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
        let e = match tok {
            Some(Tok::Num(n)) => Expr::Lit(Value::Number(n)),
            Some(Tok::Dur(d)) => Expr::Lit(Value::Duration(d)),
            Some(Tok::Str(s)) => Expr::Lit(Value::String(s)),
            Some(Tok::Ident(id)) if id == "true" => Expr::Lit(Value::Bool(true)),
            Some(Tok::Ident(id)) if id == "false" => Expr::Lit(Value::Bool(false)),
            Some(Tok::Ident(id)) => Expr::Var(id),
            Some(Tok::LParen) => {
                let (_, e) = self.or()?;
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
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.chars().count(),
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

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{}", *n as i64),
            Value::Number(n) => write!(f, "{n:.3}"),
            Value::Duration(d) if d.as_secs() >= 60 => {
                write!(
                    f,
                    "{}",
                    humantime::format_duration(Duration::from_secs(d.as_secs()))
                )
            }
            Value::Duration(d) => write!(f, "{:.3}s", d.as_secs_f64()),
            Value::String(s) => write!(f, "{s}"),
        }
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
}

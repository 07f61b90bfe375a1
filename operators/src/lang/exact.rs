//! Exact JSON numbers where only machine numbers exist: CEL (`int`, `uint`, `double`),
//! minijinja (integers up to 128 bits, `f64`) and the sums of `aggregate` and `window`.
//!
//! serde_json keeps every number as its text (feature `arbitrary_precision`), so a payload
//! number that only passes through is written back as read, whatever its width. (serde_json
//! writes an exponent with its sign: `1e2` and `1E2` are read as `1e+2`, the same number.)
//!
//! Crossing into an expression, a number is [`classify`]d:
//!
//! | number | CEL | written back |
//! |---|---|---|
//! | integer in i64 / u64 | `int` / `uint` | as is |
//! | decimal that f64 holds as written (`0.1`, `1.5`, `1.0`) | `double` | as is |
//! | other finite decimal (`1e+2`, `1.50`, `-0`, `0.1000000000000000055511151231257827`) | `double` (its f64) | as written, when the result holds the same f64 |
//! | integer beyond u64 / i64, number beyond f64 (`1e400`), non-zero number f64 reads as 0 (`1e-400`), integer of more than 17 digits f64 does not hold written as a decimal (`99999999999999999999.0`) | opaque [`ExactNumber`] | as is |
//!
//! An opaque number can be passed on (alone or inside lists and maps) and compared with `==`
//! to another, by value (`1e400 == 10e399`); it equals no int or double (none has its value); arithmetic and ordering on it fail (CEL has no wider number), and the failure
//! names it. Arithmetic on decimals is f64 arithmetic; a result that is, as f64, one of the
//! input decimals is written with that decimal's spelling (the same f64 either way). When two
//! inputs spell one f64 differently (`1.5`, `1.50`) and the result holds it, writing it is
//! refused rather than guessed ([`Spellings::number`]).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use serde_json::{Number, Value};

/// How a JSON number is held by an expression language with 64-bit numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Held {
    /// An integer that i64 holds.
    Int(i64),
    /// An integer that u64 holds and i64 does not.
    UInt(u64),
    /// A decimal that f64 holds and serde_json writes back as written.
    Float(f64),
    /// A finite number whose f64 is spelled otherwise (or is an approximation): computed
    /// with as the f64, written back as the text.
    Spelled(f64),
    /// An integer beyond i64 and u64, or a number beyond f64's range: only its text.
    Exact,
}

/// Whether `text` (a JSON number) is written as an integer.
pub(crate) fn integer_syntax(text: &str) -> bool {
    !text.contains(['.', 'e', 'E'])
}

/// Classifies a number for CEL (see the module docs).
pub fn classify(n: &Number) -> Held {
    let text = n.as_str();
    if integer_syntax(text) && text != "-0" {
        if let Ok(i) = text.parse::<i64>() {
            return Held::Int(i);
        }
        if let Ok(u) = text.parse::<u64>() {
            return Held::UInt(u);
        }
        return Held::Exact;
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && !lost_by_f64(text, f) => match Number::from_f64(f) {
            Some(canonical) if canonical.as_str() == text => Held::Float(f),
            _ => Held::Spelled(f),
        },
        _ => Held::Exact,
    }
}

/// Whether the f64 `f` read from the decimal `text` lost more than a double's rounding: a
/// non-zero number read as 0 (`1e-400`), or an integer written with more significant digits
/// than f64 holds (17) that f64 does not hold (`99999999999999999999.0`,
/// `9.9999999999999999999e19`: equal to the integer `99999999999999999999`, which is opaque,
/// so they must be too for `==` to hold). `6.02e23` and `1.5e300` stay doubles.
fn lost_by_f64(text: &str, f: f64) -> bool {
    const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is an f64
    if f == 0.0 {
        let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
        return mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    }
    if f.abs() < EXACT_INTEGERS {
        return false;
    }
    match decimal(&Number::from_str(text).expect("a JSON number")) {
        Some(d) if d.is_integer() && d.normalized().digits() > 17 => {
            BigDecimal::from_str(&format!("{f:.0}")).is_ok_and(|held| held != d)
        }
        Some(_) => false,
        None => true,
    }
}

/// A number no 64-bit type holds, carried as its text: passed on unchanged, equal (`==`) to
/// the same number however it is spelled (`1e400` = `10e399`), not computed with.
#[derive(Clone)]
pub struct ExactNumber(pub Number);

impl PartialEq for ExactNumber {
    fn eq(&self, other: &Self) -> bool {
        numbers_equal(&self.0, &other.0)
    }
}

impl Eq for ExactNumber {}

impl fmt::Debug for ExactNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&short(&self.0))
    }
}

impl cel::objects::Opaque for ExactNumber {
    fn runtime_type_name(&self) -> &str {
        "kafclaw.exact_number"
    }

    fn json(&self) -> Option<Value> {
        Some(Value::Number(self.0.clone()))
    }
}

/// The longest number text an error message shows whole.
const SHOWN_CHARS: usize = 64;

/// `n` for an error message: as written when short, else its start, `…` and its length
/// (`1000…(4097 characters)`, 32 characters kept), so a message never holds thousands of digits.
pub fn short(n: &Number) -> String {
    short_text(n.as_str())
}

/// [`short`] for any text (a key, a value's JSON).
pub fn short_text(text: &str) -> String {
    if text.chars().count() <= SHOWN_CHARS {
        return text.to_owned();
    }
    let head: String = text.chars().take(SHOWN_CHARS / 2).collect();
    format!("{head}…({} characters)", text.chars().count())
}

/// The numbers an expression was given that it may hand back: consulted when a CEL `double`
/// is written back as JSON. Collected while the variables are bound.
#[derive(Debug, Default)]
pub struct Spellings {
    /// f64 bits → the text of an input decimal spelled otherwise than f64 writes it.
    spelled: Vec<(u64, Number)>,
    /// f64 bits of input decimals spelled as f64 writes them.
    plain: Vec<u64>,
    /// The first opaque number bound (named when an evaluation fails).
    exact: Option<Number>,
}

impl Spellings {
    /// Notes an input number and how it is held.
    pub fn note(&mut self, n: &Number, held: Held) {
        match held {
            Held::Spelled(f) => self.spelled.push((f.to_bits(), n.clone())),
            Held::Float(f) => self.plain.push(f.to_bits()),
            Held::Exact if self.exact.is_none() => self.exact = Some(n.clone()),
            _ => {}
        }
    }

    /// The first opaque number bound, if any.
    pub fn exact(&self) -> Option<&Number> {
        self.exact.as_ref()
    }

    /// `f` as a JSON number: spelled as the input decimal with the same f64 when there is
    /// one, else as f64 writes it. Errors: `f` is infinite or NaN (JSON has no such number),
    /// or inputs spell this f64 in two ways.
    pub fn number(&self, f: f64) -> Result<Number, String> {
        let bits = f.to_bits();
        let plain = || Number::from_f64(f).ok_or_else(|| format!("the result holds {f}, which is not a JSON number"));
        let mut found: Option<&Number> = None;
        for (b, n) in &self.spelled {
            if *b != bits {
                continue;
            }
            match found {
                Some(m) if m != n => return Err(ambiguous(m, n)),
                _ => found = Some(n),
            }
        }
        match found {
            None => plain(),
            Some(n) if self.plain.contains(&bits) => Err(ambiguous(n, &plain()?)),
            Some(n) => Ok(n.clone()),
        }
    }
}

fn ambiguous(a: &Number, b: &Number) -> String {
    let (a, b) = (short(a), short(b));
    format!("the result holds a number the input spells both `{a}` and `{b}`: cannot tell which to write")
}

/// The largest power-of-ten distance between numbers that [`compare`] and [`Sum`] align
/// (so a number such as `1e999999999` cannot make them build a billion-digit integer).
const MAX_EXPONENT: i64 = 4096;

/// `n` as an exact decimal, if its exponent and its number of digits are within
/// [`MAX_EXPONENT`].
pub fn decimal(n: &Number) -> Option<BigDecimal> {
    // Longer texts have more digits than allowed; refuse them before parsing.
    if n.as_str().len() > 2 * MAX_EXPONENT as usize {
        return None;
    }
    let d = BigDecimal::from_str(n.as_str()).ok()?;
    let (_, scale) = d.as_bigint_and_scale();
    (scale.abs() <= MAX_EXPONENT && d.digits() <= MAX_EXPONENT as u64).then_some(d)
}

/// An exact decimal as a JSON number: plain digits (keeping its scale: `101.0`) unless that
/// would take more than 20 trailing zeros or 60 fraction digits, then `1e+400`-style.
pub fn to_number(d: &BigDecimal) -> Number {
    let normalized = d.normalized();
    let (_, scale) = normalized.as_bigint_and_scale();
    let text = if (-20..=60).contains(&scale) { d.to_plain_string() } else { normalized.to_scientific_notation() };
    Number::from_str(&text).expect("a decimal's text is a JSON number")
}

/// Whether two numbers are equal as numbers (`1.0` = `1` = `1e+0`, `1e+2` = `100`), exactly:
/// two different 25-digit integers differ. Numbers written with more than 64 KiB of text are
/// equal only when written alike.
pub fn numbers_equal(a: &Number, b: &Number) -> bool {
    if a.as_str() == b.as_str() {
        return true;
    }
    // Beyond this length only the texts are compared (parsing would cost more than it tells).
    if a.as_str().len().max(b.as_str().len()) > 64 * 1024 {
        return false;
    }
    match (BigDecimal::from_str(a.as_str()), BigDecimal::from_str(b.as_str())) {
        // Normalised (trailing zeros moved into the exponent), equal numbers have equal
        // digits and exponents; nothing is scaled, whatever the exponents.
        (Ok(x), Ok(y)) => {
            let (x, y) = (x.normalized(), y.normalized());
            x.as_bigint_and_scale() == y.as_bigint_and_scale()
        }
        _ => false,
    }
}

/// The order of two numbers, exactly; `None` when one is too far out of range to compare
/// (see [`decimal`]).
pub fn compare(a: &Number, b: &Number) -> Option<Ordering> {
    if numbers_equal(a, b) {
        return Some(Ordering::Equal);
    }
    Some(decimal(a)?.cmp(&decimal(b)?))
}

/// The most digits a value `aggregate` and `window` sum may have before its decimal point,
/// and after it. Bounding both (not only the exponent) bounds every sum: `u64::MAX` values
/// below `10^1024` with at most 1024 fraction digits sum to fewer than 2068 digits, which
/// [`decimal`] reads back, so a key's stored sum can always take the next value.
pub const SUM_DIGITS: i64 = 1024;

/// `n` as an exact decimal that sums can take ([`SUM_DIGITS`]); the error names `n` (cut).
pub fn summable(n: &Number) -> Result<BigDecimal, String> {
    let refuse = || {
        format!(
            "{} is beyond what is summed exactly (at most {SUM_DIGITS} digits before the decimal point and {SUM_DIGITS} after)",
            short(n)
        )
    };
    let d = decimal(n).ok_or_else(refuse)?;
    let normalized = d.normalized();
    let (_, scale) = normalized.as_bigint_and_scale();
    let before_point = normalized.digits() as i64 - scale;
    if scale > SUM_DIGITS || before_point > SUM_DIGITS { Err(refuse()) } else { Ok(d) }
}

/// The text of `n` as a key: equal numbers give equal texts (`1` = `1.0` = `1e0` = `10e-1`
/// give `1`; `-0` gives `0`). An integer written plainly keeps its text, whatever its width,
/// and so does a decimal written plainly without trailing zeros (`0.1`, `2.5`), so the keys
/// such numbers had stay as they were. Others are written plainly (`1e2` → `100`,
/// `2.50` → `2.5`) unless that takes more than 4096 zeros (`1e+5000`); a text too long to
/// parse (over 8 KiB) is kept as it is.
pub fn canonical(n: &Number) -> Cow<'_, str> {
    let text = n.as_str();
    if integer_syntax(text) {
        return if text == "-0" { Cow::Borrowed("0") } else { Cow::Borrowed(text) };
    }
    if text.len() > 2 * MAX_EXPONENT as usize {
        return Cow::Borrowed(text);
    }
    let Ok(d) = BigDecimal::from_str(text) else { return Cow::Borrowed(text) };
    if bigdecimal::Zero::is_zero(&d) {
        return Cow::Borrowed("0");
    }
    let d = d.normalized();
    let (_, scale) = d.as_bigint_and_scale();
    let canonical =
        if (-MAX_EXPONENT..=MAX_EXPONENT).contains(&scale) { d.to_plain_string() } else { d.to_scientific_notation() };
    if canonical == text { Cow::Borrowed(text) } else { Cow::Owned(canonical) }
}

/// Whether two JSON values are equal, numbers compared as numbers ([`numbers_equal`]);
/// objects by their keys whatever the order.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, xv)| y.get(k).is_some_and(|yv| json_eq(xv, yv)))
        }
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Number {
        Number::from_str(text).unwrap()
    }

    #[test]
    fn numbers_are_held_by_what_holds_them_as_written() {
        assert_eq!(classify(&n("12")), Held::Int(12));
        assert_eq!(classify(&n("18446744073709551615")), Held::UInt(u64::MAX));
        for exact in ["18446744073709551616", "-99999999999999999999", "1e400", "-1e400", "1234567890123456789012345"] {
            assert_eq!(classify(&n(exact)), Held::Exact, "{exact}");
        }
        assert_eq!(classify(&n("0.1")), Held::Float(0.1));
        assert_eq!(classify(&n("1.0")), Held::Float(1.0));
        assert_eq!(classify(&n("1e2")), Held::Spelled(100.0));
        assert_eq!(classify(&n("1.50")), Held::Spelled(1.5));
        assert_eq!(classify(&n("0.1000000000000000055511151231257827")), Held::Spelled(0.1));
        assert!(matches!(classify(&n("-0")), Held::Spelled(z) if z == 0.0 && z.is_sign_negative()));
        // f64 would lose more than a fraction's rounding: opaque, compared by value with ==.
        for lost in ["1e-400", "-1e-400", "99999999999999999999.0", "9.9999999999999999999e19"] {
            assert_eq!(classify(&n(lost)), Held::Exact, "{lost}");
        }
        assert_eq!(classify(&n("0e-400")), Held::Spelled(0.0));
        assert_eq!(classify(&n("1e20")), Held::Float(1e20));
        assert_eq!(classify(&n("1.5e300")), Held::Float(1.5e300));
        assert_eq!(classify(&n("6.02e23")), Held::Float(6.02e23));
        assert_eq!(classify(&n("1180591620717411303424.0")), Held::Spelled(2f64.powi(70)));
    }

    #[test]
    fn opaque_numbers_are_equal_by_value() {
        let x = |t: &str| ExactNumber(n(t));
        assert_eq!(x("1e400"), x("10e399"));
        assert_eq!(x("99999999999999999999"), x("9.9999999999999999999e19"));
        assert_eq!(x("99999999999999999999"), x("99999999999999999999.0"));
        assert_ne!(x("99999999999999999999"), x("99999999999999999998"));
        let long = format!("{:?}", x(&format!("1{}", "0".repeat(4096))));
        assert_eq!(long, format!("1{}…(4097 characters)", "0".repeat(31)));
    }

    #[test]
    fn summable_values_bound_every_sum() {
        assert!(summable(&n("1e400")).is_ok());
        assert!(summable(&n("1e-1024")).is_ok());
        assert!(summable(&n(&format!("{}.5", "9".repeat(1024)))).is_ok());
        for refused in ["1e4096", "1e1024", "1e-1025", "1e5000"] {
            let e = summable(&n(refused)).unwrap_err();
            assert!(e.contains("beyond what is summed") && e.len() < 200, "{e}");
        }
    }

    #[test]
    fn canonical_key_texts_are_one_per_value() {
        for (a, b) in [("1", "1"), ("1.0", "1"), ("1e0", "1"), ("10e-1", "1"), ("-0", "0"), ("0.0", "0")] {
            assert_eq!(canonical(&n(a)), b, "{a}");
        }
        for (a, b) in [("1e2", "100"), ("2.50", "2.5"), ("1e20", "100000000000000000000"), ("-1.50e1", "-15")] {
            assert_eq!(canonical(&n(a)), b, "{a}");
        }
        // Texts already canonical are kept (the keys they had stay).
        for same in ["99999999999999999999", "-7", "0.1", "2.5", "123456789012345678901234567890.123456789"] {
            assert!(matches!(canonical(&n(same)), Cow::Borrowed(t) if t == same), "{same}");
        }
        assert_eq!(canonical(&n("9.9999999999999999999e19")), "99999999999999999999");
        assert_eq!(canonical(&n("1e5000")), canonical(&n("10e4999")));
    }

    #[test]
    fn spellings_write_back_the_input_unless_two_inputs_disagree() {
        let mut s = Spellings::default();
        for t in ["0.1000000000000000055511151231257827", "1e2", "2.5"] {
            let num = n(t);
            s.note(&num, classify(&num));
        }
        assert_eq!(s.number(0.1).unwrap().as_str(), "0.1000000000000000055511151231257827");
        assert_eq!(s.number(100.0).unwrap().as_str(), "1e+2");
        assert_eq!(s.number(2.5).unwrap().as_str(), "2.5");
        assert_eq!(s.number(7.25).unwrap().as_str(), "7.25");
        assert!(s.number(f64::INFINITY).unwrap_err().contains("not a JSON number"));
        let plain = n("0.1");
        s.note(&plain, classify(&plain));
        assert!(s.number(0.1).unwrap_err().contains("cannot tell"));
    }

    #[test]
    fn equality_is_numeric_and_exact() {
        assert!(numbers_equal(&n("1.0"), &n("1")));
        assert!(numbers_equal(&n("1e2"), &n("100")));
        assert!(numbers_equal(&n("-0"), &n("0")));
        assert!(numbers_equal(&n("1e999999999"), &n("10e999999998")));
        assert!(!numbers_equal(&n("1234567890123456789012345"), &n("1234567890123456789012346")));
        assert!(!numbers_equal(&n("0.1"), &n("0.1000000000000000055511151231257827")));
        assert_eq!(compare(&n("99999999999999999999"), &n("1e20")), Some(Ordering::Less));
        assert_eq!(compare(&n("1e999999999"), &n("1")), None);
        let a = serde_json::json!({"a": [1, {"b": 2.50}], "c": null});
        let b: Value = serde_json::from_str(r#"{"c": null, "a": [1.0, {"b": 2.5}]}"#).unwrap();
        assert!(json_eq(&a, &b));
        assert!(!json_eq(&a, &serde_json::json!({"a": [1, {"b": 2.51}], "c": null})));
    }

    #[test]
    fn sums_print_plain_unless_the_exponent_is_large() {
        let d = |t: &str| decimal(&n(t)).unwrap();
        assert_eq!(to_number(&(d("99999999999999999999") + d("1"))).as_str(), "100000000000000000000");
        assert_eq!(to_number(&(d("0.1") + d("0.2"))).as_str(), "0.3");
        assert_eq!(to_number(&(d("1e400") + d("1e400"))).as_str(), "2e+400");
        assert!(decimal(&n("1e5000")).is_none());
    }
}

//! Which `dt` partitions a query can touch, read off its filters on `dt` and
//! on `event_at`, and which users (`user_id = …`, `user_id IN (…)`), so that
//! files whose `user_id` statistics rule them all out are not read.
//! Conservative: a filter it does not understand narrows nothing, so
//! pruning never drops a row the query would have returned.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

/// Inclusive bounds on the UTC date of the events a query can return.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl DateRange {
    /// The range every one of `filters` (a conjunction) allows.
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut range = DateRange::default();
        for filter in filters {
            range.narrow(filter);
        }
        range
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.from.is_none_or(|f| day >= f) && self.to.is_none_or(|t| day <= t)
    }

    fn at_least(&mut self, day: NaiveDate) {
        self.from = Some(self.from.map_or(day, |f| f.max(day)));
    }

    fn at_most(&mut self, day: NaiveDate) {
        self.to = Some(self.to.map_or(day, |t| t.min(day)));
    }

    fn narrow(&mut self, filter: &Expr) {
        match filter {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::And => {
                self.narrow(left);
                self.narrow(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, day) = match (is_date_column(left), is_date_column(right)) {
                    (true, false) => (*op, literal_day(right)),
                    (false, true) => match op.swap() {
                        Some(op) => (op, literal_day(left)),
                        None => return,
                    },
                    _ => return,
                };
                let Some(day) = day else { return };
                match op {
                    Operator::Eq => {
                        self.at_least(day);
                        self.at_most(day);
                    }
                    Operator::Gt | Operator::GtEq => self.at_least(day),
                    Operator::Lt | Operator::LtEq => self.at_most(day),
                    _ => {}
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_date_column(expr) => {
                if let Some(day) = literal_day(low) {
                    self.at_least(day);
                }
                if let Some(day) = literal_day(high) {
                    self.at_most(day);
                }
            }
            Expr::InList(list) if !list.negated && is_date_column(&list.expr) => {
                let days: Option<Vec<NaiveDate>> = list.list.iter().map(literal_day).collect();
                if let Some(days) = days
                    && let (Some(min), Some(max)) = (days.iter().min(), days.iter().max())
                {
                    self.at_least(*min);
                    self.at_most(*max);
                }
            }
            _ => {}
        }
    }
}

/// The user ids a query can return, when its filters name them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Users {
    /// `None`: any user.
    pub only: Option<Vec<String>>,
}

impl Users {
    /// The users every one of `filters` (a conjunction) allows.
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut users = Users::default();
        for filter in filters {
            users.narrow(filter);
        }
        users
    }

    /// Whether a file whose `user_id` values lie in `range` (`None`: not
    /// known) may hold one of the users.
    pub fn may_be_in(&self, range: Option<(&str, &str)>) -> bool {
        match (&self.only, range) {
            (Some(users), Some((min, max))) => {
                users.iter().any(|u| u.as_str() >= min && u.as_str() <= max)
            }
            _ => true,
        }
    }

    fn narrow(&mut self, filter: &Expr) {
        if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = filter
            && *op == Operator::And
        {
            self.narrow(left);
            self.narrow(right);
            return;
        }
        if let Some(named) = named_users(filter) {
            self.only = Some(match self.only.take() {
                None => named,
                Some(before) => before.into_iter().filter(|u| named.contains(u)).collect(),
            });
        }
    }
}

/// The users `filter` allows, when it names them: `user_id = 'a'`,
/// `user_id IN ('a', 'b')`, or an `OR` of such (what short IN lists become).
fn named_users(filter: &Expr) -> Option<Vec<String>> {
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut users = named_users(left)?;
            users.extend(named_users(right)?);
            Some(users)
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (is_user_column(left), is_user_column(right)) {
            (true, false) => literal_text(right).map(|u| vec![u]),
            (false, true) => literal_text(left).map(|u| vec![u]),
            _ => None,
        },
        Expr::InList(list) if !list.negated && is_user_column(&list.expr) => {
            list.list.iter().map(literal_text).collect()
        }
        _ => None,
    }
}

fn is_user_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Column(c) if c.name == "user_id")
}

fn literal_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

/// `dt` or `event_at`, possibly under a cast: both order like the UTC date.
fn is_date_column(expr: &Expr) -> bool {
    match expr {
        Expr::Column(c) => c.name == "dt" || c.name == "event_at",
        Expr::Cast(c) => is_date_column(&c.expr),
        Expr::TryCast(c) => is_date_column(&c.expr),
        _ => false,
    }
}

/// The UTC date of a literal date, timestamp or date/timestamp text.
fn literal_day(expr: &Expr) -> Option<NaiveDate> {
    let value = match expr {
        Expr::Literal(value, _) => value,
        Expr::Cast(c) => return literal_day(&c.expr),
        _ => return None,
    };
    let micros = |v: i64, per_second: i64| {
        DateTime::from_timestamp_micros(v.checked_mul(1_000_000 / per_second)?)
    };
    let at = match value {
        ScalarValue::Date32(Some(days)) => {
            return NaiveDate::from_ymd_opt(1970, 1, 1)?
                .checked_add_signed(chrono::Duration::days(i64::from(*days)));
        }
        ScalarValue::TimestampSecond(Some(v), _) => micros(*v, 1)?,
        ScalarValue::TimestampMillisecond(Some(v), _) => micros(*v, 1_000)?,
        ScalarValue::TimestampMicrosecond(Some(v), _) => micros(*v, 1_000_000)?,
        ScalarValue::TimestampNanosecond(Some(v), _) => DateTime::from_timestamp_nanos(*v),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            return parse_day(s);
        }
        _ => return None,
    };
    Some(at.date_naive())
}

fn parse_day(text: &str) -> Option<NaiveDate> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(day);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.naive_utc().date());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.date())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn reads_bounds_from_dt_and_event_at() {
        let filters = [
            col("dt").gt_eq(lit("2026-11-20")),
            lit(ScalarValue::TimestampMicrosecond(
                Some(1_764_288_000_000_000), // 2025-11-28T00:00:00Z
                Some("UTC".into()),
            ))
            .gt(col("event_at")),
        ];
        let range = DateRange::from_filters(&filters);
        assert_eq!(range.from, Some(day("2026-11-20")));
        assert_eq!(range.to, Some(day("2025-11-28")));
    }

    #[test]
    fn unknown_filters_narrow_nothing() {
        let filters = [
            col("event_type").eq(lit("login")),
            col("dt").not_eq(lit("2026-11-20")),
            col("dt").gt(col("other")),
        ];
        assert_eq!(DateRange::from_filters(&filters), DateRange::default());
    }

    #[test]
    fn users_named_by_equality_and_in_lists() {
        let users = Users::from_filters(&[col("user_id").eq(lit("u42"))]);
        assert_eq!(users.only, Some(vec!["u42".to_owned()]));
        assert!(users.may_be_in(Some(("u4", "u5"))));
        assert!(!users.may_be_in(Some(("u5", "u9"))));
        assert!(users.may_be_in(None), "a file without statistics is read");
        let both = Users::from_filters(&[
            col("user_id").in_list(vec![lit("a"), lit("b")], false),
            lit("b")
                .eq(col("user_id"))
                .and(col("event_type").eq(lit("login"))),
        ]);
        assert_eq!(both.only, Some(vec!["b".to_owned()]));
        let either =
            Users::from_filters(&[col("user_id").eq(lit("a")).or(lit("c").eq(col("user_id")))]);
        assert_eq!(either.only, Some(vec!["a".to_owned(), "c".to_owned()]));
        // Anything else names no user: every file is read.
        for filter in [
            col("user_id").not_eq(lit("a")),
            col("user_id").in_list(vec![lit("a")], true),
            col("user_id").eq(col("other")),
            col("user_id").eq(lit(42)),
            col("user_id")
                .eq(lit("a"))
                .or(col("event_type").eq(lit("b"))),
        ] {
            let users = Users::from_filters(std::slice::from_ref(&filter));
            assert_eq!(users.only, None, "{filter}");
            assert!(users.may_be_in(Some(("x", "y"))));
        }
    }

    #[test]
    fn between_and_in_list() {
        let between = col("dt").between(lit("2026-11-01"), lit("2026-11-03"));
        let range = DateRange::from_filters(&[between]);
        assert!(range.contains(day("2026-11-02")) && !range.contains(day("2026-11-04")));
        let list = col("dt").in_list(vec![lit("2026-11-05"), lit("2026-11-02")], false);
        let range = DateRange::from_filters(&[list]);
        assert_eq!(
            (range.from, range.to),
            (Some(day("2026-11-02")), Some(day("2026-11-05")))
        );
    }
}

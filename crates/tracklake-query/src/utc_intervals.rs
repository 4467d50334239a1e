//! `event_at - INTERVAL '30' MINUTE` as a duration: the lake's times are
//! UTC, where an interval without months is a fixed number of
//! microseconds, but arithmetic on a time-zoned timestamp with an interval
//! converts every value through the time zone (a third of a sessionising
//! query's time, most of a self-join's filter). This optimizer rule turns
//! `t ± INTERVAL …` into `t ± <duration>` when `t` is a timestamp in UTC
//! (or without a zone) and the interval has no months: the same instant,
//! plain integer arithmetic.

use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

#[derive(Debug, Default)]
pub struct UtcIntervals;

impl OptimizerRule for UtcIntervals {
    fn name(&self) -> &str {
        "tracklake_utc_intervals"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        // The schema the plan's expressions are evaluated against: a join's
        // filter sees both sides, anything else its one input.
        let schema: DFSchema = match (&plan, plan.inputs().as_slice()) {
            (LogicalPlan::Join(_), _) => plan.schema().as_ref().clone(),
            (_, [input]) => input.schema().as_ref().clone(),
            _ => return Ok(Transformed::no(plan)),
        };
        // Output columns keep their names (`t - IntervalMonthDayNano(…)`):
        // a rule must not change the plan's schema.
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform_up(|e| as_duration(e, &schema))?;
            Ok(Transformed::new_transformed(
                name.restore(rewritten.data),
                rewritten.transformed,
            ))
        })
    }
}

fn as_duration(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if !matches!(op, Operator::Plus | Operator::Minus) {
        return Ok(Transformed::no(expr));
    }
    let Expr::Literal(interval, _) = right.as_ref() else {
        return Ok(Transformed::no(expr));
    };
    let Ok(DataType::Timestamp(unit, zone)) = left.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    if !zone
        .as_deref()
        .is_none_or(|z| matches!(z, "UTC" | "+00:00" | "Z"))
    {
        return Ok(Transformed::no(expr));
    }
    let Some(nanos) = fixed_nanos(interval) else {
        return Ok(Transformed::no(expr));
    };
    let Some(duration) = duration(nanos, unit) else {
        return Ok(Transformed::no(expr));
    };
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
        left.clone(),
        *op,
        Box::new(Expr::Literal(duration, None)),
    ))))
}

/// An interval literal without months, in nanoseconds.
fn fixed_nanos(interval: &ScalarValue) -> Option<i128> {
    match interval {
        ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano {
            months: 0,
            days,
            nanoseconds,
        })) => Some(i128::from(*days) * 86_400_000_000_000 + i128::from(*nanoseconds)),
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(i128::from(v.days) * 86_400_000_000_000 + i128::from(v.milliseconds) * 1_000_000)
        }
        _ => None,
    }
}

/// The duration literal in the timestamp's unit; none when the interval
/// is finer than the unit or too large.
fn duration(nanos: i128, unit: TimeUnit) -> Option<ScalarValue> {
    let per = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    if nanos % per != 0 {
        return None;
    }
    let n = i64::try_from(nanos / per).ok()?;
    Some(match unit {
        TimeUnit::Second => ScalarValue::DurationSecond(Some(n)),
        TimeUnit::Millisecond => ScalarValue::DurationMillisecond(Some(n)),
        TimeUnit::Microsecond => ScalarValue::DurationMicrosecond(Some(n)),
        TimeUnit::Nanosecond => ScalarValue::DurationNanosecond(Some(n)),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::prelude::SessionContext;

    use super::*;

    /// Same answers with the rule as without it, and the plan shows the
    /// duration; an interval with months, or a time in another zone, is
    /// left alone.
    #[tokio::test]
    async fn intervals_become_durations_in_utc_only() {
        let times = [
            1_733_000_000_000_000i64,
            1_733_000_000_000_001,
            1_733_001_800_000_000,
        ];
        let column = |zone: Option<&str>| {
            TimestampMicrosecondArray::from(times.to_vec()).with_timezone_opt(zone.map(Arc::from))
        };
        let zoned = |zone: Option<&str>| Field::new("t", column(zone).data_type().clone(), false);
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                zoned(Some("UTC")),
                zoned(Some("Europe/Paris")).with_name("p"),
            ])),
            vec![
                Arc::new(column(Some("UTC"))),
                Arc::new(column(Some("Europe/Paris"))),
            ],
        )
        .unwrap();
        let plain = SessionContext::new();
        let ruled = SessionContext::new();
        ruled.add_optimizer_rule(Arc::new(UtcIntervals));
        for ctx in [&plain, &ruled] {
            ctx.register_batch("x", batch.clone()).unwrap();
        }
        let queries = [
            "SELECT count(*) FROM x WHERE t - INTERVAL '30' MINUTE >= TIMESTAMP '2024-11-30 21:03:20'",
            "SELECT t + INTERVAL '1' DAY + INTERVAL '1' HOUR AS a, t - INTERVAL '1' MONTH AS b, p + INTERVAL '1' DAY AS c FROM x ORDER BY t",
            // Unnamed: the column keeps the name it had (the optimizer
            // refuses a rule that changes the schema).
            "SELECT t - INTERVAL '30' MINUTE, date_trunc('hour', t + INTERVAL '2' HOUR) FROM x ORDER BY 1",
            "SELECT count(*) FROM x a JOIN x b ON b.t > a.t AND b.t <= a.t + INTERVAL '1' HOUR",
        ];
        for sql in queries {
            let run = |ctx: &SessionContext| {
                let ctx = ctx.clone();
                async move {
                    let frame = ctx.sql(sql).await.unwrap();
                    let rows = frame.collect().await.unwrap();
                    datafusion::arrow::util::pretty::pretty_format_batches(&rows)
                        .unwrap()
                        .to_string()
                }
            };
            assert_eq!(run(&plain).await, run(&ruled).await, "{sql}");
        }
        let plan = |sql: &str| {
            let ruled = ruled.clone();
            let sql = sql.to_owned();
            async move {
                let frame = ruled.sql(&format!("EXPLAIN {sql}")).await.unwrap();
                let rows = frame.collect().await.unwrap();
                datafusion::arrow::util::pretty::pretty_format_batches(&rows)
                    .unwrap()
                    .to_string()
            }
        };
        let shown = plan(queries[1]).await;
        assert!(
            shown.contains(
                "x.t + DurationMicrosecond(\"86400000000\") + DurationMicrosecond(\"3600000000\") AS a"
            ),
            "{shown}"
        );
        assert!(
            shown.contains("x.t - IntervalMonthDayNano"),
            "months stay: {shown}"
        );
        assert!(
            shown.contains("x.p + IntervalMonthDayNano"),
            "Paris stays: {shown}"
        );
    }
}

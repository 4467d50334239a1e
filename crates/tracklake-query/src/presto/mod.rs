//! The Presto/Trino functions Athena users write for event analytics that
//! DataFusion lacks or names differently. DataFusion's own `date_trunc`,
//! `approx_distinct`, `regexp_like`, `split_part`, `current_date` and
//! `TRY_CAST` already behave as Athena's.

mod datetime;
mod json;
mod network;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    Accumulator, ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility, create_udaf,
};
use datafusion::prelude::SessionContext;

/// One evaluated argument, as an array of the batch's length.
pub struct Arg {
    pub array: ArrayRef,
}

impl Arg {
    fn strings(&self) -> Result<StringArray> {
        let array = cast(&self.array, &DataType::Utf8)?;
        Ok(datafusion::common::cast::as_string_array(&array)?.clone())
    }

    fn int64s(&self) -> Result<Int64Array> {
        let array = cast(&self.array, &DataType::Int64)?;
        Ok(datafusion::common::cast::as_int64_array(&array)?.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Func {
    FromIso8601Timestamp,
    FromIso8601Date,
    ToIso8601,
    DateFormat,
    DateParse,
    DateAdd,
    DateDiff,
    FromUnixtime,
    ToUnixtime,
    AtTimezone,
    Date,
    JsonExtractScalar,
    IpPrefix,
}

impl Func {
    const ALL: [(Func, &'static str, usize); 13] = [
        (Func::FromIso8601Timestamp, "from_iso8601_timestamp", 1),
        (Func::FromIso8601Date, "from_iso8601_date", 1),
        (Func::ToIso8601, "to_iso8601", 1),
        (Func::DateFormat, "date_format", 2),
        (Func::DateParse, "date_parse", 2),
        (Func::DateAdd, "date_add", 3),
        (Func::DateDiff, "date_diff", 3),
        (Func::FromUnixtime, "from_unixtime", 1),
        (Func::ToUnixtime, "to_unixtime", 1),
        (Func::AtTimezone, "at_timezone", 2),
        (Func::Date, "date", 1),
        (Func::JsonExtractScalar, "json_extract_scalar", 2),
        (Func::IpPrefix, "ip_prefix", 2),
    ];
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Presto {
    func: Func,
    name: &'static str,
    signature: Signature,
}

/// A constant text argument, which some result types depend on.
fn constant_text<'a>(args: &ReturnFieldArgs<'a>, i: usize) -> Option<&'a str> {
    match args.scalar_arguments.get(i).copied().flatten() {
        Some(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
        ) => Some(s),
        _ => None,
    }
}

impl ScalarUDFImpl for Presto {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        unreachable!("return_field_from_args is implemented")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let input = |i: usize| args.arg_fields[i].data_type().clone();
        let data_type = match self.func {
            Func::FromIso8601Timestamp => {
                datetime::timestamp_type(&datetime::literal_offset(args.scalar_arguments[0]))
            }
            Func::FromIso8601Date | Func::Date => DataType::Date32,
            Func::ToIso8601 | Func::DateFormat | Func::JsonExtractScalar | Func::IpPrefix => {
                DataType::Utf8
            }
            Func::DateParse => {
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None)
            }
            Func::DateAdd => match input(2) {
                DataType::Date32 | DataType::Date64 => DataType::Date32,
                DataType::Timestamp(_, zone) => {
                    DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, zone)
                }
                other => return plan_err!("date_add: expected a date or timestamp, got {other}"),
            },
            Func::DateDiff => DataType::Int64,
            Func::FromUnixtime => datetime::timestamp_type("UTC"),
            Func::ToUnixtime => DataType::Float64,
            Func::AtTimezone => match constant_text(&args, 1) {
                Some(zone) => {
                    zone.parse::<datafusion::arrow::array::timezone::Tz>()?;
                    datetime::timestamp_type(zone)
                }
                None => {
                    return plan_err!(
                        "at_timezone: the zone must be a constant text such as 'America/New_York'"
                    );
                }
            },
        };
        Ok(Arc::new(Field::new(self.name, data_type, true)))
    }

    fn invoke_with_args(&self, call: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = call
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&call.args)?;
        let args: Vec<Arg> = arrays.into_iter().map(|array| Arg { array }).collect();
        let out = match self.func {
            Func::FromIso8601Timestamp => {
                let zone = match call.return_field.data_type() {
                    DataType::Timestamp(_, Some(z)) => z.to_string(),
                    _ => "UTC".into(),
                };
                datetime::from_iso8601_timestamp(&args[0], &zone)?
            }
            Func::FromIso8601Date => datetime::from_iso8601_date(&args[0])?,
            Func::ToIso8601 => datetime::to_iso8601(&args[0])?,
            Func::DateFormat => datetime::date_format(&args[0], &args[1])?,
            Func::DateParse => datetime::date_parse(&args[0], &args[1])?,
            Func::DateAdd => datetime::date_add(&args[0], &args[1], &args[2])?,
            Func::DateDiff => datetime::date_diff(&args[0], &args[1], &args[2])?,
            Func::FromUnixtime => datetime::from_unixtime(&args[0], "UTC")?,
            Func::ToUnixtime => datetime::to_unixtime(&args[0])?,
            Func::AtTimezone => match call.return_field.data_type() {
                DataType::Timestamp(_, Some(zone)) => datetime::at_timezone(&args[0], zone)?,
                _ => unreachable!("at_timezone returns a zoned timestamp"),
            },
            Func::Date => datetime::date(&args[0])?,
            Func::JsonExtractScalar => json::extract_scalar(&args[0], &args[1])?,
            Func::IpPrefix => network::ip_prefix(&args[0], &args[1])?,
        };
        if all_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// Registers every function of this module with a session.
pub fn register(ctx: &SessionContext) {
    for (func, name, arity) in Func::ALL {
        let signature = Signature::any(arity, Volatility::Immutable);
        ctx.register_udf(ScalarUDF::from(Presto {
            func,
            name,
            signature,
        }));
    }
    ctx.register_udaf(create_udaf(
        "count_if",
        vec![DataType::Boolean],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(CountIf(0)))),
        Arc::new(vec![DataType::Int64]),
    ));
}

/// `count_if(condition)`: rows where the condition is true.
#[derive(Debug)]
struct CountIf(i64);

impl Accumulator for CountIf {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let conditions = datafusion::common::cast::as_boolean_array(&values[0])?;
        self.0 += conditions.iter().filter(|c| *c == Some(true)).count() as i64;
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.0)))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(Some(self.0))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let counts = datafusion::common::cast::as_int64_array(&states[0])?;
        self.0 += counts.iter().flatten().sum::<i64>();
        Ok(())
    }
}

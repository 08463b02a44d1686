//! `POST /results/batches?exam_year=Y[&on_existing=replace]`: loads a batch
//! of one year's results, all or nothing. Write token; writes to the
//! primary, through PgBouncer in transaction mode.
//!
//! The body (`text/csv` with a `roll_number,marks` header, or
//! `application/x-ndjson`; see [`crate::batch`]) is read as it arrives and
//! streamed with COPY into a temporary table, never held whole. Over
//! `BATCH_MAX_BYTES` (by `Content-Length` or by bytes read) it is 413. Any
//! invalid row, a roll number repeated within the batch, or (unless
//! `on_existing=replace`) a result that exists already rejects the whole
//! batch: 422 `batch_rejected` with a report. Otherwise 201 with the counts.
//! The whole load, body included, runs within `BATCH_STATEMENT_TIMEOUT_MS`,
//! which is also set on the server for its transaction.

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::Digest;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{committed, replay, respond, with_state, Function, BATCHES};
use crate::batch::{Format, Kind, Reader, Rejected, Report, REPORTED_ROWS};
use crate::config::{Access, Auth};
use crate::db::{Applied, BatchTx, OnExisting, Once, Operation, Recorded};
use crate::error::ApiError;
use crate::http::{authorized_writer, idempotency_key, raw_header, IDEMPOTENT_REPLAYED};
use crate::model::YearRange;
use crate::state::AppState;
use crate::telemetry;

/// The create-results-batch function.
pub const FUNCTION: Function = Function {
    name: "create-results-batch",
    access: Access::Write,
    auth: Auth::WriteToken,
    method: &Method::POST,
    route: BATCHES,
    routes,
};

/// POST /results/batches?exam_year=Y[&on_existing=reject|replace] with a CSV or NDJSON body
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let max_bytes = state.batch_max_bytes;
    FUNCTION
        .route
        .filter()
        .and(FUNCTION.allowed())
        .and(authorized_writer(&state))
        .and(batch_query(state.years))
        .and(batch_format())
        .and(within_limit(max_bytes))
        .and(idempotency_key())
        .and(warp::body::stream())
        .and(with_state(state))
        .then(
            |query: BatchQuery, format: Format, key: Option<String>, body, state: AppState| async move {
                create_results_batch(query, format, key, Box::pin(body), state).await
            },
        )
        .map(respond)
        .boxed()
}

/// The validated query string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchQuery {
    /// The year every row belongs to.
    pub exam_year: i32,
    /// What a row whose result exists does.
    pub on_existing: OnExisting,
}

impl BatchQuery {
    /// Parses `exam_year=Y` (required) and `on_existing=reject|replace`
    /// (default `reject`): 400 if malformed, unknown or repeated, 422 if
    /// the year is out of range.
    pub fn parse(raw: &str, years: YearRange) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
        let (mut exam_year, mut on_existing) = (None, None);
        for (name, value) in pairs {
            let slot_taken = match name.as_str() {
                "exam_year" => exam_year.replace(value).is_some(),
                "on_existing" => on_existing.replace(value).is_some(),
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter `{other}`; expected exam_year and on_existing"
                    )))
                }
            };
            if slot_taken {
                return Err(ApiError::BadRequest(format!("`{name}` is given twice")));
            }
        }
        let exam_year = exam_year
            .ok_or_else(|| ApiError::BadRequest("`exam_year` is required".into()))?
            .parse::<i32>()
            .map_err(|_| ApiError::BadRequest("`exam_year` must be an integer".into()))?;
        years.check(exam_year)?;
        let on_existing = match on_existing.as_deref() {
            None | Some("reject") => OnExisting::Reject,
            Some("replace") => OnExisting::Replace,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "`on_existing` must be `reject` or `replace`, got `{other}`"
                )))
            }
        };
        Ok(Self {
            exam_year,
            on_existing,
        })
    }

    fn canonical(self) -> String {
        let on_existing = match self.on_existing {
            OnExisting::Reject => "reject",
            OnExisting::Replace => "replace",
        };
        format!("exam_year={}&on_existing={on_existing}", self.exam_year)
    }
}

fn batch_query(years: YearRange) -> impl Filter<Extract = (BatchQuery,), Error = Rejection> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(move |raw: String| {
            let query = BatchQuery::parse(&raw, years).map_err(Rejection::from);
            async move { query }
        })
}

/// 415 unless the body is `text/csv` or `application/x-ndjson`.
fn batch_format() -> impl Filter<Extract = (Format,), Error = Rejection> + Clone {
    raw_header(header::CONTENT_TYPE.as_str()).and_then(|value: Option<HeaderValue>| async move {
        value
            .and_then(|value| Format::from_media_type(value.as_bytes()))
            .ok_or_else(|| {
                Rejection::from(ApiError::UnsupportedMediaType(
                    "text/csv or application/x-ndjson",
                ))
            })
    })
}

/// 413 when `Content-Length` announces more than `max_bytes`.
fn within_limit(max_bytes: u64) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    raw_header(header::CONTENT_LENGTH.as_str())
        .and_then(move |value: Option<HeaderValue>| async move {
            let length = value
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            match length {
                Some(length) if length > max_bytes => Err(Rejection::from(
                    ApiError::PayloadTooLarge(max_bytes as usize),
                )),
                _ => Ok(()),
            }
        })
        .untuple_one()
}

/// How a load ended, short of an error.
enum Loaded {
    Fresh(Recorded),
    Replayed(Recorded),
}

async fn create_results_batch<S, B>(
    query: BatchQuery,
    format: Format,
    key: Option<String>,
    body: S,
    state: AppState,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let started = std::time::Instant::now();
    let deadline = state.batch_timeout;
    let mut tx = state.db.begin_batch(deadline).await?;
    let loaded = tokio::time::timeout(deadline, load(&mut tx, query, format, key, body, &state)).await;
    telemetry::record_query(Operation::LoadBatch.as_str(), started.elapsed());
    let (recorded, replayed) = match loaded {
        Ok(Ok(Loaded::Fresh(recorded))) => {
            tx.commit().await?;
            (recorded, false)
        }
        // Nothing to keep; the rollback ends before the answer, so the
        // idempotency key is free when the client sends its next request.
        Ok(Ok(Loaded::Replayed(recorded))) => {
            tx.rollback().await;
            (recorded, true)
        }
        Ok(Err(err)) => {
            tx.rollback().await;
            return Err(err);
        }
        Err(_) => {
            tx.cancel();
            return Err(ApiError::Unavailable(format!(
                "the batch exceeded the statement timeout of {deadline:?}"
            )));
        }
    };
    let mut response = replay(recorded);
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(committed(response, &state).await)
}

/// COPY's text format is flushed to the server in pieces of about this size.
const COPY_CHUNK_BYTES: usize = 64 * 1024;

async fn load<S, B>(
    tx: &mut BatchTx,
    query: BatchQuery,
    format: Format,
    key: Option<String>,
    mut body: S,
    state: &AppState,
) -> Result<Loaded, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    if let Some(key) = &key {
        tx.lock_key(key).await?;
    }
    tx.stage().await?;
    let mut reader = Reader::new(format);
    let mut digest = sha2::Sha256::new();
    digest.update(format!("POST {}?{} {}\n", BATCHES.template(), query.canonical(), format.media_type()));
    let mut copy = BytesMut::with_capacity(COPY_CHUNK_BYTES * 2);
    let mut read: u64 = 0;
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|err| {
            ApiError::BadRequest(format!("could not read the request body: {err}"))
        })?;
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            read += n as u64;
            if read > state.batch_max_bytes {
                return Err(ApiError::PayloadTooLarge(state.batch_max_bytes as usize));
            }
            digest.update(part);
            reader.push(part, |row| {
                copy.put_slice(format!("{}\t{}\t{}\n", row.line, row.roll_number, row.marks).as_bytes());
            });
            chunk.advance(n);
        }
        if copy.len() >= COPY_CHUNK_BYTES {
            tx.send(copy.split().freeze()).await?;
        }
    }
    reader.finish(|row| {
        copy.put_slice(format!("{}\t{}\t{}\n", row.line, row.roll_number, row.marks).as_bytes());
    });
    if !copy.is_empty() {
        tx.send(copy.split().freeze()).await?;
    }
    tx.staged().await?;

    let once = key.map(|key| Once {
        key,
        request: digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        ttl: state.idempotency_ttl,
    });
    if let Some(once) = &once {
        if let Some(recorded) = tx.find_key(once).await? {
            return Ok(Loaded::Replayed(recorded));
        }
    }

    let mut report = reader.report;
    let (count, duplicates) = tx.duplicates(REPORTED_ROWS as i64).await?;
    report.add(
        Kind::Duplicate,
        count,
        duplicates
            .into_iter()
            .map(|(line, roll_number, first)| Rejected {
                line,
                roll_number: Some(roll_number),
                reason: format!("roll_number {roll_number} is also on line {first}"),
            })
            .collect(),
    );
    if query.on_existing == OnExisting::Reject {
        add_existing(tx, query.exam_year, &mut report).await?;
    }
    if report.is_rejected() {
        return Err(ApiError::BatchRejected(Box::new(report)));
    }
    let (inserted, replaced) = match tx.apply(query.exam_year, query.on_existing).await? {
        Applied::Done { inserted, replaced } => (inserted, replaced),
        // A concurrent batch committed some of these keys meanwhile.
        Applied::Existing => {
            add_existing(tx, query.exam_year, &mut report).await?;
            return Err(ApiError::BatchRejected(Box::new(report)));
        }
    };
    let body = serde_json::json!({
        "exam_year": query.exam_year,
        "rows": report.rows,
        "inserted": inserted,
        "replaced": replaced,
    });
    let recorded = Recorded {
        status: StatusCode::CREATED.as_u16(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&body).unwrap_or_default(),
    };
    if let Some(once) = &once {
        tx.record(once, &recorded).await?;
    }
    Ok(Loaded::Fresh(recorded))
}

async fn add_existing(tx: &BatchTx, exam_year: i32, report: &mut Report) -> Result<(), ApiError> {
    let (count, existing) = tx.existing(exam_year, REPORTED_ROWS as i64).await?;
    report.add(
        Kind::Existing,
        count,
        existing
            .into_iter()
            .map(|(line, roll_number)| Rejected {
                line,
                roll_number: Some(roll_number),
                reason: format!("a result for roll_number {roll_number} in {exam_year} exists"),
            })
            .collect(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEARS: YearRange = YearRange {
        min: 2000,
        max: 2100,
    };

    #[test]
    fn the_query_names_the_year_and_optionally_what_existing_results_do() {
        assert_eq!(
            BatchQuery::parse("exam_year=2024", YEARS).unwrap(),
            BatchQuery {
                exam_year: 2024,
                on_existing: OnExisting::Reject
            }
        );
        assert_eq!(
            BatchQuery::parse("on_existing=replace&exam_year=2024", YEARS)
                .unwrap()
                .on_existing,
            OnExisting::Replace
        );
        for (raw, code) in [
            ("", "bad_request"),
            ("exam_year=x", "bad_request"),
            ("exam_year=2024&exam_year=2025", "bad_request"),
            ("exam_year=2024&upsert=1", "bad_request"),
            ("exam_year=2024&on_existing=merge", "bad_request"),
            ("exam_year=1999", "validation_failed"),
        ] {
            assert_eq!(BatchQuery::parse(raw, YEARS).unwrap_err().code(), code, "{raw}");
        }
    }
}

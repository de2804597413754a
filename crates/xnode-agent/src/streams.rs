//! The API's streams of Server-Sent Events: a workload's log followed, and the node's
//! changes (`GET /v1/events`). Each runs for as long as its client listens, and ends
//! with an `error` event when it cannot go on.

use std::collections::VecDeque;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse as _, Response};
use tokio::sync::mpsc;
use xnode_api::events::{self, Seen, changes};
use xnode_api::node::History;
use xnode_api::{Request, StreamError};

use crate::http::refusal;
use crate::server::Refusal;
use crate::service::Command;

/// Streams at once, at most: each holds a connection (and a followed log a blocking
/// thread) for as long as its client listens, and the API's other requests must still
/// get in.
const MOST_STREAMS: usize = 16;

static STREAMS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MOST_STREAMS);

/// A workload's last `lines` log lines and then each new one, as Server-Sent Events
/// (`data:` one JSON log line each), for as long as the client listens. If the journal
/// cannot be read on, an `error` event says why, and the stream ends.
pub async fn logs(workload: String, lines: usize, commands: &mpsc::Sender<Command>) -> Response {
    let permit = match permit() {
        Ok(permit) => permit,
        Err(busy) => return refusal(busy),
    };
    // The loop says whether the spec in force has the workload.
    let known = Request::Logs {
        workload: workload.clone(),
        lines: 0,
    };
    if let Err(r) = crate::server::dispatch(known, commands).await {
        return refusal(r);
    }
    let (tx, rx) = mpsc::channel(256);
    let (ended, why) = tokio::sync::oneshot::channel::<String>();
    let unit = xnode_spec::unit::unit_name(&workload);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = crate::logs::follow(&unit, lines, &tx) {
            let _ = ended.send(e);
        }
    });
    // The permit goes with the stream: it is given back when the client hangs up.
    let events = futures_util::stream::unfold(
        (rx, Some(why), permit),
        |(mut rx, why, permit)| async move {
            let event = match rx.recv().await {
                Some(line) => Event::default().json_data(line),
                None => {
                    let why = why?.await.ok()?;
                    failure(why)
                }
            };
            Some((
                Ok::<_, std::convert::Infallible>(sent(event)),
                (rx, None, permit),
            ))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A slot for one more stream, or the refusal when all are taken.
fn permit() -> Result<tokio::sync::SemaphorePermit<'static>, Refusal> {
    STREAMS.try_acquire().map_err(|_| Refusal {
        code: "unavailable",
        message: format!("{MOST_STREAMS} streams are open already; try again later"),
    })
}

/// The event that ends a stream that cannot go on.
fn failure(why: String) -> Result<Event, axum::Error> {
    Event::default()
        .event("error")
        .json_data(StreamError { message: why })
}

/// How often the node is looked at for changes.
pub const EVERY: Duration = Duration::from_millis(500);

/// The node's changes, for as long as the client listens: a snapshot first, then each
/// change (`xnode_api::events::changes`) seen by looking at the node every [`EVERY`].
/// Each event's name is its kind.
pub async fn events(commands: mpsc::Sender<Command>) -> Response {
    let permit = match permit() {
        Ok(permit) => permit,
        Err(busy) => return refusal(busy),
    };
    let first = match look(&commands).await {
        Ok(status) => status,
        Err(r) => return refusal(r),
    };
    let snapshot = events::Event::Snapshot {
        status: Box::new(first.status.clone()),
    };
    struct Watching {
        commands: mpsc::Sender<Command>,
        last: Seen,
        pending: VecDeque<events::Event>,
        ended: bool,
        _permit: tokio::sync::SemaphorePermit<'static>,
    }
    let watching = Watching {
        commands,
        last: first,
        pending: VecDeque::from([snapshot]),
        ended: false,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(watching, |mut w| async move {
        loop {
            if let Some(e) = w.pending.pop_front() {
                let event = Event::default().event(e.kind()).json_data(&e);
                return Some((Ok::<_, std::convert::Infallible>(sent(event)), w));
            }
            if w.ended {
                return None;
            }
            tokio::time::sleep(EVERY).await;
            match look(&w.commands).await {
                Ok(next) => {
                    w.pending.extend(changes(&w.last, &next));
                    w.last = next;
                }
                Err(r) => {
                    w.ended = true;
                    return Some((Ok(sent(failure(r.message))), w));
                }
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// An event as sent: one that cannot be encoded becomes a comment.
fn sent(event: Result<Event, axum::Error>) -> Event {
    event.unwrap_or_else(|_| Event::default().comment("an event that cannot be sent"))
}

/// The node's status and generations, as `GET /v1/status` and `/v1/history` answer
/// them.
async fn look(commands: &mpsc::Sender<Command>) -> Result<Seen, Refusal> {
    let unreadable = |e: serde_json::Error| Refusal {
        code: "unavailable",
        message: format!("the node's status could not be read: {e}"),
    };
    let status = crate::server::dispatch(Request::Status, commands).await?;
    let history = crate::server::dispatch(Request::History, commands).await?;
    Ok(Seen {
        status: serde_json::from_value(status).map_err(unreadable)?,
        generations: serde_json::from_value::<History>(history)
            .map_err(unreadable)?
            .generations,
    })
}

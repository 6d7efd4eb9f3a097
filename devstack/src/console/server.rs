//! The console's HTTP server: the page, `GET /snapshot` and `GET /events`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures_util::Stream;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::assets;
use super::events::{Envelope, EventBus, Snapshot};

/// How often an idle event stream sends a comment, so proxies and the
/// browser keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The page may load only its own files and open WebSockets anywhere (the
/// URL field may name a deployed stack); it fetches nothing else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// What the page needs to know about the stack it runs beside.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackInfo {
    /// The Pulumi stack, e.g. `dev`.
    pub stack: String,
    pub project: String,
    pub region: String,
    /// `ws://<edge-addr>/`: the page's default URL.
    pub edge: String,
    /// `ws://<api-addr>/<stage>`: direct, needs the key a browser cannot send.
    pub api: String,
    /// Sign-in on `$connect`, when the program turns it on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<SignInInfo>,
}

/// What the page needs to sign in: the query parameter that carries the
/// token, and whether the console can mint one (`POST /token`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInInfo {
    pub token_parameter: String,
    /// The stack's local issuer, which `POST /token` asks; never sent to
    /// the page (it mints through the console).
    #[serde(skip)]
    pub local_issuer: Option<String>,
    /// Whether the page may ask for a token by user name.
    pub mints: bool,
}

/// `GET /snapshot`, and the first event of `GET /events`.
#[derive(Serialize)]
struct SnapshotBody<'a> {
    stack: &'a StackInfo,
    #[serde(flatten)]
    snapshot: Snapshot,
}

struct Shared {
    info: StackInfo,
    bus: EventBus,
    stop: CancellationToken,
}

/// The console server. Clones share one server; [`stop`](Self::stop) ends
/// every event stream and lets [`serve`](Self::serve) return.
#[derive(Clone)]
pub struct Console {
    shared: Arc<Shared>,
}

impl Console {
    pub fn new(info: StackInfo, bus: EventBus) -> Self {
        Console {
            shared: Arc::new(Shared {
                info,
                bus,
                stop: CancellationToken::new(),
            }),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/snapshot", get(snapshot))
            .route("/events", get(events))
            .route("/token", axum::routing::post(token))
            .route("/{file}", get(asset))
            .fallback(not_found)
            .layer(middleware::from_fn(loopback_host))
            .with_state(self.shared.clone())
    }

    /// Serves until [`stop`](Self::stop).
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let stop = self.shared.stop.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    }

    /// Ends the event streams and the server.
    pub fn stop(&self) {
        self.shared.stop.cancel();
    }
}

/// The body of `POST /token`: the user to sign in as.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    sub: String,
}

/// `POST /token`: a token for `sub` from the stack's local issuer, for the
/// page's sign-in field. Only a JSON body is accepted: a page of another
/// origin cannot send one without a CORS preflight, which this server does
/// not answer, so it cannot obtain a token (nor can it read the answer).
async fn token(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /token takes a JSON body {\"sub\": \"<user>\"} (Content-Type: application/json).\n",
        );
    }
    let Some(issuer) = shared
        .info
        .sign_in
        .as_ref()
        .and_then(|s| s.local_issuer.clone())
    else {
        return text(
            StatusCode::NOT_FOUND,
            "This stack has no local issuer (sign-in off, or a real --issuer): paste a token instead.\n",
        );
    };
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "POST /token takes a JSON body {\"sub\": \"<user>\"}.\n",
            );
        }
    };
    let mint = local_issuer::MintRequest::for_user(request.sub);
    match crate::issuer::mint(&issuer, &mint).await {
        Ok(token) => Json(serde_json::json!({ "token": token })).into_response(),
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({ "error": format!("{error:#}") })),
        )
            .into_response(),
    }
}

/// Refuses requests whose `Host` is not a loopback name: a web page elsewhere
/// could otherwise read the console through a DNS name rebound to 127.0.0.1.
async fn loopback_host(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if is_loopback_host(host) {
        next.run(request).await
    } else {
        text(
            StatusCode::FORBIDDEN,
            "The console answers only to a loopback host (127.0.0.1, localhost, [::1]).\n",
        )
    }
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn file(asset: &'static assets::Asset) -> Response {
    let mut response = Response::new(Body::from(asset.body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // The page changes with the binary; a rebuilt stack must not be served stale files.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn index() -> Response {
    match assets::find("index.html") {
        Some(page) => file(page),
        None => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "index.html is missing from this build\n",
        ),
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    match assets::find(&name) {
        Some(asset) => file(asset),
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "No such page. The console is at /, its counts at /snapshot, its event stream at /events.\n",
    )
}

async fn snapshot(State(shared): State<Arc<Shared>>) -> Response {
    let body = SnapshotBody {
        stack: &shared.info,
        snapshot: shared.bus.snapshot(),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The event stream: a `snapshot` event, then a `stack` event per
/// [`Envelope`]. A console that falls too far behind gets a fresh `snapshot`
/// instead of the events it missed; each event is sent at most once.
async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (snapshot, receiver) = shared.bus.subscribe();
    let stream = EventStream {
        first: Some(snapshot),
        last_seq: 0,
        receiver,
        shared,
    };
    let stream = futures_util::stream::unfold(stream, |mut stream| async move {
        let event = stream.next().await?;
        Some((Ok(event), stream))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

struct EventStream {
    first: Option<Snapshot>,
    last_seq: u64,
    receiver: Receiver<Envelope>,
    shared: Arc<Shared>,
}

impl EventStream {
    /// The next event to send; `None` once the console stops.
    async fn next(&mut self) -> Option<Event> {
        if let Some(snapshot) = self.first.take() {
            return Some(self.snapshot_event(snapshot));
        }
        loop {
            let received = tokio::select! {
                () = self.shared.stop.cancelled() => return None,
                received = self.receiver.recv() => received,
            };
            match received {
                Ok(envelope) if envelope.seq <= self.last_seq => continue,
                Ok(envelope) => {
                    self.last_seq = envelope.seq;
                    return Some(json_event("stack", envelope.seq, &envelope));
                }
                Err(RecvError::Lagged(_)) => {
                    // Start over from the current counts, with a receiver of
                    // what comes after them (not the backlog it fell behind on).
                    let (snapshot, receiver) = self.shared.bus.subscribe();
                    self.receiver = receiver;
                    return Some(self.snapshot_event(snapshot));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    fn snapshot_event(&mut self, snapshot: Snapshot) -> Event {
        self.last_seq = snapshot.seq;
        let seq = snapshot.seq;
        let body = SnapshotBody {
            stack: &self.shared.info,
            snapshot,
        };
        json_event("snapshot", seq, &body)
    }
}

fn json_event(name: &str, seq: u64, data: &impl Serialize) -> Event {
    let event = Event::default().event(name).id(seq.to_string());
    match serde_json::to_string(data) {
        Ok(json) => event.data(json),
        // Our own types always serialise; should one not, the page says so.
        Err(error) => Event::default()
            .event("error")
            .data(format!("cannot serialise the {name} event: {error}")),
    }
}

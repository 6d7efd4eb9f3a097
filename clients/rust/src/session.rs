//! The connection's life, run by one task per client: connect, serve the
//! open socket (sends, keepalive, incoming frames), and on a close wait out
//! the backoff and connect again — until a deliberate close or the give-up.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use protocol::{ClientFrame, ServerFrame};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, handshake::client::Request};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::backoff::{backoff_delay, close_advice};
use crate::{ClientError, Options, RecentIds};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The client's states; a life goes connecting → open → reconnecting → … → closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Open,
    Reconnecting,
    Closed,
}

/// What the client tells the app, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A state change: the close code that caused it (if any), the wait
    /// before the next attempt (reconnecting), and why, in words.
    State {
        state: State,
        code: Option<u16>,
        delay: Option<Duration>,
        detail: String,
    },
    /// A `message` frame whose id was not seen within the window.
    Message(ServerFrame),
    /// Any other frame of the function (`sent`, `pong`, `error`).
    Frame(ServerFrame),
}

/// Where a frame went: onto the open socket, or into the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    Queued,
}

enum Command {
    Send(String, oneshot::Sender<Result<Delivery, ClientError>>),
    Close(oneshot::Sender<()>),
}

/// A connection that keeps itself open. Dropping it ends the task.
pub struct Client {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
}

/// Events the app has not read yet; over it the task waits (and stops
/// reading the socket) rather than drop one.
const EVENT_BUFFER: usize = 1_024;

impl Client {
    /// Starts connecting in a task of its own (call within a tokio runtime).
    pub fn connect(options: Options) -> Client {
        let (commands, commands_rx) = mpsc::channel(64);
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(Session::new(options, commands_rx, events_tx).run());
        Client { commands, events }
    }

    /// Sends `data` as a `sendmessage`.
    pub async fn send(&self, data: Value) -> Result<Delivery, ClientError> {
        self.send_frame(&ClientFrame::send_message(data)).await
    }

    /// Sends a `ping` (the function answers `pong`).
    pub async fn ping(&self) -> Result<Delivery, ClientError> {
        self.send_frame(&ClientFrame::ping()).await
    }

    /// Sends any client frame.
    pub async fn send_frame(&self, frame: &ClientFrame) -> Result<Delivery, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Send(frame.to_text(), reply))
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)?
    }

    /// Closes for good with 1000; returns once the close was sent.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Close(reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// The next event; `None` once the client has closed and every event was read.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

/// How an open connection ended.
enum Ended {
    /// Closed by the server or the network, with this code (1006: no close frame).
    Dropped(u16, String),
    /// The app closed the client, or dropped it.
    ByApp,
}

struct Session {
    options: Options,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    queue: VecDeque<String>,
    recent: RecentIds,
    failures: u32,
}

impl Session {
    fn new(
        options: Options,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
    ) -> Self {
        let recent = RecentIds::new(options.dedupe_window);
        Session {
            options,
            commands,
            events,
            queue: VecDeque::new(),
            recent,
            failures: 0,
        }
    }

    async fn run(mut self) {
        loop {
            self.state(State::Connecting, None, None, "connecting")
                .await;
            let (code, detail, opened) = match self.attempt().await {
                Attempt::Open(socket) => {
                    let opened_at = Instant::now();
                    self.state(State::Open, None, None, "open").await;
                    match self.serve(socket).await {
                        Ended::ByApp => return self.closed(None, "closed by the app").await,
                        Ended::Dropped(code, reason) => {
                            if opened_at.elapsed() >= self.options.stable {
                                self.failures = 0;
                            }
                            let advice = close_advice(code);
                            if !advice.reconnect {
                                return self.closed(Some(code), advice.why).await;
                            }
                            (Some(code), format!("{}: {reason}", advice.why), true)
                        }
                    }
                }
                Attempt::Failed(detail) => (None, detail, false),
                Attempt::ByApp => return self.closed(None, "closed by the app").await,
            };
            // As clients/js: a handshake that never opened counts before its
            // wait is drawn; a drop counts after (a stable connection has
            // reset the count, so its first wait is under `base`).
            if !opened {
                self.failures += 1;
                if self
                    .options
                    .max_attempts
                    .is_some_and(|limit| self.failures >= limit)
                {
                    let why = format!(
                        "gave up after {} attempts that did not open: {detail}",
                        self.failures
                    );
                    return self.closed(code, &why).await;
                }
            }
            let delay = backoff_delay(
                self.failures,
                self.options.base,
                self.options.cap,
                rand::random(),
            );
            if opened {
                self.failures += 1;
            }
            self.state(State::Reconnecting, code, Some(delay), &detail)
                .await;
            if !self.wait(delay).await {
                return self.closed(None, "closed by the app").await;
            }
        }
    }

    /// One handshake, bounded by the connect timeout, taking commands meanwhile.
    async fn attempt(&mut self) -> Attempt {
        let request = match self.request() {
            Ok(request) => request,
            Err(detail) => return Attempt::Failed(detail),
        };
        let connect = tokio::time::timeout(
            self.options.connect_timeout,
            tokio_tungstenite::connect_async(request),
        );
        tokio::pin!(connect);
        loop {
            tokio::select! {
                result = &mut connect => return match result {
                    Ok(Ok((socket, _))) => Attempt::Open(Box::new(socket)),
                    Ok(Err(error)) => Attempt::Failed(format!("the handshake failed: {error}")),
                    Err(_) => Attempt::Failed(format!("the handshake did not complete within {:?}", self.options.connect_timeout)),
                },
                command = self.commands.recv() => if !self.take_while_away(command) {
                    return Attempt::ByApp;
                },
            }
        }
    }

    fn request(&self) -> Result<Request, String> {
        let mut request = self
            .options
            .attempt_url()
            .as_str()
            .into_client_request()
            .map_err(|e| format!("the URL cannot be requested: {e}"))?;
        for (name, value) in &self.options.headers {
            let name =
                HeaderName::try_from(name.as_str()).map_err(|e| format!("header {name}: {e}"))?;
            let value =
                HeaderValue::try_from(value.as_str()).map_err(|e| format!("header {name}: {e}"))?;
            request.headers_mut().insert(name, value);
        }
        Ok(request)
    }

    /// Serves an open socket until it closes; flushes the queue first.
    async fn serve(&mut self, mut socket: Box<Socket>) -> Ended {
        while let Some(text) = self.queue.pop_front() {
            if let Err(error) = socket.send(Message::text(text.clone())).await {
                self.queue.push_front(text);
                return Ended::Dropped(1006, format!("sending the queue failed: {error}"));
            }
        }
        let keepalive = tokio::time::sleep(self.options.keepalive);
        tokio::pin!(keepalive);
        loop {
            tokio::select! {
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Text(text))) => self.received(text.as_str()).await,
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                        return Ended::Dropped(code, reason);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Ended::Dropped(1006, error.to_string()),
                    None => return Ended::Dropped(1006, "the connection ended without a close frame".into()),
                },
                command = self.commands.recv() => match command {
                    Some(Command::Send(text, reply)) => {
                        match socket.send(Message::text(text.clone())).await {
                            Ok(()) => {
                                let _ = reply.send(Ok(Delivery::Sent));
                                keepalive.as_mut().reset(Instant::now() + self.options.keepalive);
                            }
                            Err(error) => {
                                // Not taken by the socket: kept for the next connection.
                                self.queue.push_back(text);
                                let _ = reply.send(Ok(Delivery::Queued));
                                return Ended::Dropped(1006, error.to_string());
                            }
                        }
                    }
                    Some(Command::Close(reply)) => {
                        let frame = CloseFrame { code: CloseCode::Normal, reason: "closed by the client".into() };
                        let _ = tokio::time::timeout(Duration::from_secs(2), Socket::close(&mut socket, Some(frame))).await;
                        let _ = reply.send(());
                        return Ended::ByApp;
                    }
                    None => return Ended::ByApp,
                },
                () = &mut keepalive => {
                    keepalive.as_mut().reset(Instant::now() + self.options.keepalive);
                    if let Err(error) = socket.send(Message::text(ClientFrame::ping().to_text())).await {
                        return Ended::Dropped(1006, error.to_string());
                    }
                }
            }
        }
    }

    async fn received(&mut self, text: &str) {
        let Some(frame) = ServerFrame::parse(text) else {
            return;
        };
        let event = match &frame {
            ServerFrame::Message { id, .. } if self.recent.seen(id) => return,
            ServerFrame::Message { .. } => Event::Message(frame),
            _ => Event::Frame(frame),
        };
        let _ = self.events.send(event).await;
    }

    /// Waits out a backoff, queueing sends; false when the app closed meanwhile.
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                command = self.commands.recv() => if !self.take_while_away(command) {
                    return false;
                },
            }
        }
    }

    /// A command while there is no open socket: a send is queued (or refused
    /// over the bound); false for a close.
    fn take_while_away(&mut self, command: Option<Command>) -> bool {
        match command {
            Some(Command::Send(text, reply)) => {
                let answer = if self.queue.len() >= self.options.queue_limit {
                    Err(ClientError::QueueFull(self.options.queue_limit))
                } else {
                    self.queue.push_back(text);
                    Ok(Delivery::Queued)
                };
                let _ = reply.send(answer);
                true
            }
            Some(Command::Close(reply)) => {
                let _ = reply.send(());
                false
            }
            None => false,
        }
    }

    async fn closed(&mut self, code: Option<u16>, why: &str) {
        let dropped = self.queue.len();
        self.queue.clear();
        let detail = if dropped > 0 {
            format!("{why} ({dropped} queued frames dropped)")
        } else {
            why.to_string()
        };
        self.state(State::Closed, code, None, &detail).await;
        // Later sends find the channel closed: ClientError::Closed.
        self.commands.close();
        while let Some(command) = self.commands.recv().await {
            if let Command::Send(_, reply) = command {
                let _ = reply.send(Err(ClientError::Closed));
            }
        }
    }

    async fn state(&self, state: State, code: Option<u16>, delay: Option<Duration>, detail: &str) {
        tracing::debug!(?state, ?code, ?delay, detail, "client state");
        let _ = self
            .events
            .send(Event::State {
                state,
                code,
                delay,
                detail: detail.to_string(),
            })
            .await;
    }
}

enum Attempt {
    Open(Box<Socket>),
    Failed(String),
    ByApp,
}

//! One SMTP session: commands in, replies out, a message handed to the sink.
//!
//! Pipelining: every complete command in the input is answered before the next read, and the
//! replies go out together. Time is bounded by deadlines, not per read: a whole command line must
//! arrive within the command timeout, DATA must keep a minimum rate, and the session has a
//! deadline of its own, so a client trickling a byte at a time cannot hold a connection. A line
//! past 4 KiB, a message past the size limit, too many recipients, too many bad or idle commands
//! each get their reply.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver, RequestReceiver};
use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::auth::{self, AuthOutcome, Authenticator};
use super::replies::{self, Reply};
use super::{
    BodyType, DsnReturn, MailFrom, MessageSink, Notify, RcptTo, ReceivedMessage, ServerContext,
    SessionInfo, SinkError,
};

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The connection is finished.
    Closed,
    /// The client asked for STARTTLS and got 220: upgrade and start over.
    StartTls,
}

/// Room made for each read; the input grows only as far as a command or a data block needs.
const READ_CHUNK: usize = 16 * 1024;
/// Longest command line taken (RFC 5321 asks for 512; extensions make real lines longer).
const MAX_COMMAND_LINE: usize = 4096;

/// Session state between commands.
#[derive(Default)]
struct Transaction {
    helo: Option<String>,
    mail_from: Option<MailFrom>,
    rcpt_to: Vec<RcptTo>,
}

/// What reading more input gave.
enum Input {
    Data,
    Closed,
    TimedOut,
    ShuttingDown,
}

struct Session<'a, S, A, IO> {
    ctx: &'a ServerContext<S, A>,
    io: &'a mut IO,
    peer: IpAddr,
    tls_active: bool,
    /// Who the client authenticated as.
    identity: Option<String>,
    shutdown: watch::Receiver<bool>,
    input: Vec<u8>,
    output: String,
    state: Transaction,
    bad_commands: u32,
    /// NOOP, RSET, HELP, VRFY, EXPN since the last message taken.
    junk_commands: u32,
    /// When the next command line must be complete.
    command_deadline: Instant,
    /// When the connection ends whatever it is doing.
    session_deadline: Instant,
    /// A malformed command was cut short: drop input up to the next line end.
    skip_to_line_end: bool,
}

/// Runs a session on `io` until it ends. `greet` sends the 220 banner (not after STARTTLS).
pub(crate) async fn serve<S, A, IO>(
    ctx: &ServerContext<S, A>,
    io: &mut IO,
    peer: IpAddr,
    tls_active: bool,
    shutdown: watch::Receiver<bool>,
    greet: bool,
    session_deadline: Instant,
) -> SessionEnd
where
    S: MessageSink,
    A: Authenticator,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = Session {
        ctx,
        io,
        peer,
        tls_active,
        identity: None,
        shutdown,
        input: Vec::with_capacity(1024),
        output: String::new(),
        state: Transaction::default(),
        bad_commands: 0,
        junk_commands: 0,
        command_deadline: Instant::now()
            + Duration::from_secs(ctx.config.limits.command_timeout_secs),
        session_deadline,
        skip_to_line_end: false,
    };
    if greet {
        crate::metrics::smtp_session(ctx.config.name);
        let banner = format!(
            "220 {} {}\r\n",
            ctx.config.hostname, ctx.config.texts.greeting
        );
        session.output.push_str(&banner);
    }
    let end = session.run().await;
    let _ = session.flush().await;
    end
}

impl<S, A, IO> Session<'_, S, A, IO>
where
    S: MessageSink,
    A: Authenticator,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn run(&mut self) -> SessionEnd {
        let mut receiver = RequestReceiver::default();
        loop {
            if self.skip_to_line_end {
                match self.input.iter().position(|&b| b == b'\n') {
                    Some(pos) => {
                        self.input.drain(..=pos);
                        self.skip_to_line_end = false;
                    }
                    None => self.input.clear(),
                }
            }
            // smtp-proto checks the length only of lines split across reads.
            let line_end = self.input.iter().position(|&b| b == b'\n');
            if line_end.unwrap_or(self.input.len()) > MAX_COMMAND_LINE {
                match line_end {
                    Some(pos) => {
                        self.input.drain(..=pos);
                    }
                    None => {
                        self.input.clear();
                        self.skip_to_line_end = true;
                    }
                }
                receiver = RequestReceiver::default();
                if self.bad_command(Reply::LINE_TOO_LONG) {
                    return SessionEnd::Closed;
                }
                continue;
            }
            let (parsed, consumed) = {
                let mut bytes = self.input.iter();
                let parsed = receiver.ingest(&mut bytes).map(Request::into_owned);
                (parsed, self.input.len() - bytes.as_slice().len())
            };
            let ended_line = consumed > 0 && self.input[consumed - 1] == b'\n';
            self.input.drain(..consumed);
            if !matches!(parsed, Err(ParseError::NeedsMoreData { .. })) {
                // A command is complete: the clock starts again for the next one.
                self.command_deadline = Instant::now() + self.command_timeout();
            }
            let request = match parsed {
                Ok(request) => request,
                Err(ParseError::NeedsMoreData { .. }) => {
                    if self.skip_to_line_end && !self.input.is_empty() {
                        continue;
                    }
                    match self.read_more(self.command_deadline, true).await {
                        Input::Data => continue,
                        Input::Closed => return SessionEnd::Closed,
                        Input::TimedOut => return self.close_with(self.timeout_reply()),
                        Input::ShuttingDown => return self.close_with(Reply::SHUTTING_DOWN),
                    }
                }
                Err(error) => {
                    if !ended_line {
                        self.skip_to_line_end = true;
                    }
                    let reply = match error {
                        ParseError::ResponseTooLong => Reply::LINE_TOO_LONG,
                        ParseError::UnknownCommand => Reply::UNKNOWN_COMMAND,
                        ParseError::InvalidSenderAddress => Reply::BAD_SENDER,
                        ParseError::InvalidRecipientAddress => Reply::BAD_RECIPIENT,
                        _ => Reply::SYNTAX_ERROR,
                    };
                    if self.bad_command(reply) {
                        return SessionEnd::Closed;
                    }
                    continue;
                }
            };
            let junk = matches!(
                request,
                Request::Noop { .. }
                    | Request::Rset
                    | Request::Help { .. }
                    | Request::Vrfy { .. }
                    | Request::Expn { .. }
            );
            if junk && self.junk_command() {
                return SessionEnd::Closed;
            }
            match request {
                Request::Ehlo { host } => {
                    self.state = Transaction {
                        helo: Some(host.clone()),
                        ..Transaction::default()
                    };
                    let offer_tls = self.ctx.config.tls.is_some() && !self.tls_active;
                    let answer = replies::ehlo(
                        &self.ctx.config.hostname,
                        &host,
                        self.ctx.config.limits.max_message_size,
                        offer_tls,
                        self.offers_auth(),
                    );
                    self.output.push_str(&answer);
                }
                Request::Helo { host } | Request::Lhlo { host } => {
                    self.state = Transaction {
                        helo: Some(host),
                        ..Transaction::default()
                    };
                    self.reply(&Reply::OK.with_text(self.ctx.config.hostname.clone()));
                }
                Request::Mail { from } => {
                    if self.state.helo.is_none() {
                        self.reply(&Reply::NEED_HELO);
                    } else if self.state.mail_from.is_some() {
                        self.reply(&Reply::NESTED_MAIL);
                    } else if from.size > self.ctx.config.limits.max_message_size {
                        self.reply(&Reply::TOO_BIG);
                    } else {
                        let from = mail_from(from);
                        match self.ctx.sink.mail(&self.info(), &from).await {
                            Ok(()) => {
                                self.state.mail_from = Some(from);
                                self.reply(&Reply::SENDER_OK);
                            }
                            Err(error) => self.reply(&self.sink_reply(&error)),
                        }
                    }
                }
                Request::Rcpt { to } => {
                    let to = rcpt_to(to);
                    let info = self.info();
                    let max = self.ctx.config.limits.max_recipients;
                    let result = match &self.state.mail_from {
                        None => Err(SinkError::Reply(Reply::NEED_MAIL)),
                        Some(_) if self.state.rcpt_to.len() >= max => {
                            Err(SinkError::Reply(Reply::TOO_MANY_RECIPIENTS))
                        }
                        Some(from) => self.ctx.sink.rcpt(&info, from, &to).await,
                    };
                    match result {
                        Ok(()) => {
                            self.state.rcpt_to.push(to);
                            self.reply(&Reply::RECIPIENT_OK);
                        }
                        Err(error) => self.reply(&self.sink_reply(&error)),
                    }
                }
                Request::Data => {
                    if self.state.mail_from.is_none() {
                        self.reply(&Reply::NEED_MAIL);
                    } else if self.state.rcpt_to.is_empty() {
                        self.reply(&Reply::NEED_RCPT);
                    } else if let Some(end) = self.data().await {
                        return end;
                    }
                }
                Request::Bdat { .. } => self.reply(&Reply::NOT_IMPLEMENTED),
                Request::Rset => {
                    self.state.mail_from = None;
                    self.state.rcpt_to.clear();
                    self.reply(&Reply::RESET);
                }
                Request::Noop { .. } => self.reply(&Reply::OK),
                Request::Help { .. } => {
                    self.reply(&Reply::HELP.with_text(self.ctx.config.texts.help.clone()));
                }
                Request::Vrfy { .. } | Request::Expn { .. } => self.reply(&Reply::VRFY_DISABLED),
                Request::Quit => return self.close_with(Reply::BYE),
                Request::StartTls => {
                    if self.tls_active {
                        self.reply(&Reply::ALREADY_TLS);
                    } else if self.ctx.config.tls.is_none() {
                        self.reply(&Reply::TLS_UNAVAILABLE);
                    } else if !self.input.is_empty() {
                        // Commands pipelined after STARTTLS would cross the TLS boundary.
                        self.input.clear();
                        if self.bad_command(
                            Reply::SYNTAX_ERROR.with_text("Nothing may follow STARTTLS"),
                        ) {
                            return SessionEnd::Closed;
                        }
                    } else {
                        self.reply(&Reply::START_TLS);
                        return SessionEnd::StartTls;
                    }
                }
                Request::Auth {
                    mechanism,
                    initial_response,
                } => {
                    if let Some(end) = self.auth(mechanism, initial_response).await {
                        return end;
                    }
                }
                Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                    self.reply(&Reply::NOT_IMPLEMENTED);
                }
            }
        }
    }

    /// Receives the message after DATA; `Some` when the session ends meanwhile.
    async fn data(&mut self) -> Option<SessionEnd> {
        self.reply(&Reply::START_DATA);
        if self.flush().await.is_err() {
            return Some(SessionEnd::Closed);
        }
        let mut receiver = DataReceiver::new();
        // The receiver finds "<CRLF>.<CRLF>"; the DATA line's own CRLF starts the message.
        receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
        let mut message = Vec::new();
        let mut discard: Option<DummyDataReceiver> = None;
        let started = Instant::now();
        let grace = self.data_timeout();
        let mut received: u64 = 0;
        loop {
            let (done, consumed) = {
                let mut bytes = self.input.iter();
                let done = match discard.as_mut() {
                    Some(dummy) => dummy.ingest(&mut bytes),
                    None => receiver.ingest(&mut bytes, &mut message),
                };
                (done, self.input.len() - bytes.as_slice().len())
            };
            self.input.drain(..consumed);
            received += consumed as u64;
            if discard.is_none() && message.len() > self.ctx.config.limits.max_message_size {
                discard = Some(DummyDataReceiver::new_data(&receiver));
                message = Vec::new();
            }
            if done {
                break;
            }
            // Each block within the data timeout, and the whole message at the minimum rate once
            // the first data timeout has passed.
            let min_rate = self.ctx.config.limits.min_data_rate.max(1);
            let rate_deadline =
                started + grace + Duration::from_millis(received.saturating_mul(1000) / min_rate);
            let block_deadline = Instant::now() + self.data_timeout();
            let (deadline, too_slow) = if rate_deadline < block_deadline {
                (rate_deadline, Reply::TOO_SLOW)
            } else {
                (block_deadline, Reply::TIMEOUT)
            };
            match self.read_more(deadline, false).await {
                Input::Data => {}
                Input::Closed => return Some(SessionEnd::Closed),
                Input::TimedOut if Instant::now() >= self.session_deadline => {
                    return Some(self.close_with(Reply::SESSION_TOO_LONG));
                }
                Input::TimedOut => return Some(self.close_with(too_slow)),
                Input::ShuttingDown => unreachable!("reads during DATA ignore shutdown"),
            }
        }
        let rcpt_to = std::mem::take(&mut self.state.rcpt_to);
        let mail_from = self.state.mail_from.take().unwrap_or_default();
        if discard.is_some() {
            self.reply(&Reply::TOO_BIG);
            return None;
        }
        let received = ReceivedMessage {
            session: self.info(),
            mail_from,
            rcpt_to,
            data: message,
        };
        let reply = match self.ctx.sink.data(received).await {
            Ok(()) => {
                self.junk_commands = 0;
                Reply::ACCEPTED
            }
            Err(error) => self.sink_reply(&error),
        };
        self.reply(&reply);
        None
    }

    /// Reads more input, waiting until `deadline` at most (and never past the session's);
    /// `idle` reads also end on shutdown.
    async fn read_more(&mut self, deadline: Instant, idle: bool) -> Input {
        if self.flush().await.is_err() {
            return Input::Closed;
        }
        let idle_between_transactions = idle && self.state.mail_from.is_none();
        if idle_between_transactions && *self.shutdown.borrow() {
            return Input::ShuttingDown;
        }
        // Read into the input's spare room: no zeroed buffer per read, small idle sessions.
        self.input.reserve(READ_CHUNK);
        let read = self.io.read_buf(&mut self.input);
        let result = tokio::select! {
            result = tokio::time::timeout_at(deadline.min(self.session_deadline), read) => result,
            _ = self.shutdown.changed(), if idle_between_transactions => return Input::ShuttingDown,
        };
        match result {
            Err(_) => Input::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => Input::Closed,
            Ok(Ok(_)) => Input::Data,
        }
    }

    fn reply(&mut self, reply: &Reply) {
        if reply.code >= 400 {
            crate::metrics::smtp_rejection(self.ctx.config.name, reply.code);
        }
        self.output.push_str(&reply.to_wire());
    }

    /// Counts a bad command; `true` when the client has had too many and is dropped.
    fn bad_command(&mut self, reply: Reply) -> bool {
        self.bad_commands += 1;
        if self.bad_commands >= self.ctx.config.limits.max_bad_commands {
            self.reply(&Reply::TOO_MANY_ERRORS);
            return true;
        }
        self.reply(&reply);
        false
    }

    /// What the sink is shown of this session.
    fn info(&self) -> SessionInfo {
        SessionInfo {
            peer: self.peer,
            helo: self.state.helo.clone().unwrap_or_default(),
            tls: self.tls_active,
            identity: self.identity.clone(),
        }
    }

    /// AUTH is offered where a password cannot be read on the way: after STARTTLS, or from the
    /// machine itself.
    fn offers_auth(&self) -> bool {
        self.ctx.authenticator.is_some() && (self.tls_active || self.peer.is_loopback())
    }

    /// AUTH PLAIN or LOGIN, with the exchange it needs; `Some` when the session ends.
    async fn auth(&mut self, mechanism: u64, initial: String) -> Option<SessionEnd> {
        let Some(authenticator) = self.ctx.authenticator.clone() else {
            self.reply(&Reply::NOT_IMPLEMENTED);
            return None;
        };
        if !self.offers_auth() {
            self.reply(&Reply::ENCRYPTION_REQUIRED);
            return None;
        }
        if self.identity.is_some() {
            self.reply(&Reply::ALREADY_AUTHENTICATED);
            return None;
        }
        if self.state.mail_from.is_some() {
            self.reply(&Reply::AUTH_IN_TRANSACTION);
            return None;
        }
        let credentials = if mechanism == smtp_proto::AUTH_PLAIN {
            let response = if initial.is_empty() {
                match self.challenge("").await {
                    Ok(line) => line,
                    Err(end) => return end,
                }
            } else {
                initial
            };
            auth::decode_plain(&response)
        } else if mechanism == smtp_proto::AUTH_LOGIN {
            let user = if initial.is_empty() {
                match self.challenge(auth::LOGIN_USERNAME).await {
                    Ok(line) => auth::decode_text(&line),
                    Err(end) => return end,
                }
            } else {
                auth::decode_text(&initial)
            };
            match user {
                Some(user) => match self.challenge(auth::LOGIN_PASSWORD).await {
                    Ok(line) => auth::decode_text(&line).map(|password| (user, password)),
                    Err(end) => return end,
                },
                None => None,
            }
        } else {
            self.reply(&Reply::UNKNOWN_MECHANISM);
            return None;
        };
        let Some((user, password)) = credentials else {
            self.reply(&Reply::BAD_CREDENTIALS_SYNTAX);
            return None;
        };
        match authenticator
            .authenticate(self.peer, &user, &password)
            .await
        {
            AuthOutcome::Accepted(identity) => {
                self.identity = Some(identity);
                self.reply(&Reply::AUTHENTICATED);
                None
            }
            AuthOutcome::Rejected => {
                if self.bad_command(Reply::AUTH_FAILED) {
                    return Some(SessionEnd::Closed);
                }
                None
            }
            AuthOutcome::LockedOut => Some(self.close_with(Reply::AUTH_LOCKED_OUT)),
            AuthOutcome::Temporary => {
                self.reply(&Reply::AUTH_TEMPORARY);
                None
            }
        }
    }

    /// Sends a `334` challenge and reads the client's one-line answer. `Err` with the way the
    /// session goes on when the client cancels (`*`: 501, the session continues), times out or
    /// leaves.
    async fn challenge(&mut self, text: &str) -> Result<String, Option<SessionEnd>> {
        self.output.push_str(&format!("334 {text}\r\n"));
        loop {
            if let Some(end) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim().to_string();
                self.command_deadline = Instant::now() + self.command_timeout();
                if line == "*" {
                    self.reply(&Reply::AUTH_CANCELLED);
                    return Err(None);
                }
                return Ok(line);
            }
            if self.input.len() > MAX_COMMAND_LINE {
                self.input.clear();
                self.skip_to_line_end = true;
                self.reply(&Reply::LINE_TOO_LONG);
                return Err(None);
            }
            match self.read_more(self.command_deadline, true).await {
                Input::Data => {}
                Input::Closed => return Err(Some(SessionEnd::Closed)),
                Input::TimedOut => return Err(Some(self.close_with(self.timeout_reply()))),
                Input::ShuttingDown => return Err(Some(self.close_with(Reply::SHUTTING_DOWN))),
            }
        }
    }

    /// The reply for what the sink said.
    fn sink_reply(&self, error: &SinkError) -> Reply {
        match error {
            SinkError::UnknownRecipient => {
                Reply::UNKNOWN_RECIPIENT.with_text(self.ctx.config.texts.unknown_recipient.clone())
            }
            SinkError::Refused(text) => Reply::REFUSED.with_text(text.clone()),
            SinkError::Temporary(_) => Reply::STORE_FAILED,
            SinkError::Reply(reply) => reply.clone(),
        }
    }

    /// Counts a NOOP, RSET, HELP, VRFY or EXPN; `true` when the client has sent too many since
    /// its last message and is dropped.
    fn junk_command(&mut self) -> bool {
        self.junk_commands += 1;
        if self.junk_commands > self.ctx.config.limits.max_junk_commands {
            self.reply(&Reply::TOO_MANY_COMMANDS);
            return true;
        }
        false
    }

    /// Why a wait for a command ended: the command's own deadline, or the session's.
    fn timeout_reply(&self) -> Reply {
        if Instant::now() >= self.session_deadline {
            Reply::SESSION_TOO_LONG
        } else {
            Reply::TIMEOUT
        }
    }

    fn close_with(&mut self, reply: Reply) -> SessionEnd {
        self.reply(&reply);
        SessionEnd::Closed
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let result = tokio::time::timeout(
            self.command_timeout(),
            self.io.write_all(self.output.as_bytes()),
        )
        .await;
        self.output.clear();
        match result {
            Ok(Ok(())) => self.io.flush().await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.ctx.config.limits.command_timeout_secs)
    }

    fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.ctx.config.limits.data_timeout_secs)
    }
}

/// MAIL FROM as the sink sees it.
fn mail_from(from: smtp_proto::MailFrom<String>) -> MailFrom {
    let flags = from.flags;
    let body = if flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
        Some(BodyType::BinaryMime)
    } else if flags & smtp_proto::MAIL_BODY_8BITMIME != 0 {
        Some(BodyType::EightBitMime)
    } else if flags & smtp_proto::MAIL_BODY_7BIT != 0 {
        Some(BodyType::SevenBit)
    } else {
        None
    };
    let ret = if flags & smtp_proto::MAIL_RET_FULL != 0 {
        Some(DsnReturn::Full)
    } else if flags & smtp_proto::MAIL_RET_HDRS != 0 {
        Some(DsnReturn::Headers)
    } else {
        None
    };
    MailFrom {
        address: from.address,
        size: (from.size > 0).then_some(from.size),
        body,
        smtputf8: flags & smtp_proto::MAIL_SMTPUTF8 != 0,
        envid: from.env_id,
        ret,
    }
}

/// RCPT TO as the sink sees it.
fn rcpt_to(to: smtp_proto::RcptTo<String>) -> RcptTo {
    RcptTo {
        address: to.address,
        orcpt: to.orcpt,
        notify: Notify {
            success: to.flags & smtp_proto::RCPT_NOTIFY_SUCCESS != 0,
            failure: to.flags & smtp_proto::RCPT_NOTIFY_FAILURE != 0,
            delay: to.flags & smtp_proto::RCPT_NOTIFY_DELAY != 0,
            never: to.flags & smtp_proto::RCPT_NOTIFY_NEVER != 0,
        },
    }
}

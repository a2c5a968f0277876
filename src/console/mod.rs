//! The agent console (`sop`): a ratatui TUI. One state owner (`app::App`) with a pure update and a
//! pure view; terminal input, the live stream, HTTP calls and the cache run as tasks that send it
//! messages. It redraws only when something changed.

pub mod app;
mod bars;
pub mod cache;
pub mod component;
pub mod data;
pub mod i18n;
pub mod inbox;
pub mod keymap;
pub mod msg;
pub mod net;
pub mod popups;
pub mod tabs;
pub mod ui;

use anyhow::{Context, Result};
use app::App;
use msg::{Effect, Msg};
use ratatui::backend::Backend;
use ratatui::Terminal;
use std::io::Write;
use std::path::PathBuf;
use tokio::sync::mpsc;

pub struct Options {
    pub server: String,
    pub token: String,
    pub lang: i18n::Lang,
    pub keymap: keymap::Keymap,
    pub alert: Alert,
    pub notify: data::Notify,
    pub mouse: bool,
    pub color: bool,
    /// Root of the per-server, per-account caches; `None` runs without one.
    pub cache_root: Option<PathBuf>,
}

/// How news reaches the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    /// The terminal bell (BEL).
    pub bell: bool,
    /// A desktop notification: OSC 9 (iTerm2, Windows Terminal, kitty, foot, …) and OSC 777
    /// (urxvt, VTE terminals); a terminal that knows neither ignores both.
    pub desktop: bool,
}

/// The bytes that tell the terminal about `n`: BEL and the two notification sequences, each
/// wrapped for tmux (`ESC P tmux; … ESC \`, inner ESCs doubled) when inside it. Text from outside
/// is stripped of control characters and of `;` (OSC 777's separator), and kept short.
pub fn alert_bytes(n: &msg::Notification, alert: Alert, in_tmux: bool) -> Vec<u8> {
    let plain = |s: &str, max: usize| -> String {
        crate::model::text::sanitize_for_terminal(s, false)
            .chars()
            .filter(|c| !c.is_control() && *c != ';')
            .take(max)
            .collect()
    };
    let (title, body) = (plain(&n.title, 80), plain(&n.body, 200));
    let mut out = Vec::new();
    if alert.bell {
        out.push(0x07);
    }
    if alert.desktop {
        for seq in [
            format!("\x1b]9;{title}: {body}\x07"),
            format!("\x1b]777;notify;{title};{body}\x07"),
        ] {
            if in_tmux {
                out.extend_from_slice(b"\x1bPtmux;");
                out.extend_from_slice(seq.replace('\x1b', "\x1b\x1b").as_bytes());
                out.extend_from_slice(b"\x1b\\");
            } else {
                out.extend_from_slice(seq.as_bytes());
            }
        }
    }
    out
}

/// What the loop does to the world outside the screen; tests record it instead.
pub trait Side: Send {
    fn notify(&mut self, n: &msg::Notification, alert: Alert);
    fn copy(&mut self, text: &str);
    /// Runs `$EDITOR` on the text; `None` when it could not.
    fn edit(&mut self, text: &str) -> Option<String>;
}

/// The real terminal: BEL, OSC 52 (works over SSH), `$EDITOR` with the screen suspended.
pub struct TerminalSide;

impl Side for TerminalSide {
    fn notify(&mut self, n: &msg::Notification, alert: Alert) {
        let in_tmux = std::env::var_os("TMUX").is_some();
        let _ = std::io::stdout().write_all(&alert_bytes(n, alert, in_tmux));
        let _ = std::io::stdout().flush();
    }
    fn copy(&mut self, text: &str) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(text);
        let _ = write!(std::io::stdout(), "\x1b]52;c;{b64}\x07");
        let _ = std::io::stdout().flush();
    }
    /// The editor owns the keyboard while it runs: the input reader is paused (it would
    /// otherwise steal keystrokes), the screen restored, and the draft kept private.
    fn edit(&mut self, text: &str) -> Option<String> {
        let editor = std::env::var("VISUAL")
            .or_else(|_| std::env::var("EDITOR"))
            .unwrap_or_else(|_| "vi".into());
        let draft = match Draft::write(text) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("cannot write the draft for $EDITOR: {e}");
                return None;
            }
        };
        input::pause();
        terminal_guard::suspend();
        // `$EDITOR` may carry arguments ("code -w"), as shells and git allow.
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(draft.path())
            .status();
        terminal_guard::resume();
        input::resume();
        let out = std::fs::read_to_string(draft.path()).ok();
        status.ok().filter(|s| s.success()).and(out)
    }
}

/// A reply draft for `$EDITOR`: a 0600 file in a fresh 0700 directory (never a guessable, shared
/// `/tmp` path that a symlink could redirect), removed with the directory when dropped.
pub struct Draft {
    dir: tempfile::TempDir,
}

impl Draft {
    pub fn write(text: &str) -> std::io::Result<Draft> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = tempfile::Builder::new()
            .prefix("sop-draft-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.path().join("reply.txt"))?;
        file.write_all(text.as_bytes())?;
        Ok(Draft { dir })
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("reply.txt")
    }
}

/// Builds the state, loading the cache when there is one (so the first frame shows cached data).
pub fn prepare(opts: &Options, now: crate::model::Ms) -> (App, Option<cache::Cache>) {
    let mut app = App::new(opts.lang, opts.keymap.clone(), opts.notify, now);
    let mut cache = None;
    if let Some(root) = &opts.cache_root {
        let dir = cache::cache_dir(root, &opts.server, &opts.token);
        match cache::Cache::open(&dir) {
            Ok(cache::Opened::Ready(c)) => {
                let (snapshot, outbox) = c.load();
                if let Some(s) = snapshot {
                    app.load_snapshot(s);
                }
                app.data.outbox = outbox;
                cache = Some(c);
            }
            Ok(cache::Opened::Locked) => {
                app.data.cache_note = Some(app.data.s().no_cache.to_string())
            }
            Err(e) => {
                tracing::warn!("cache unavailable: {e:#}");
                app.data.cache_note = Some(format!("cache: {e}"));
            }
        }
    }
    (app, cache)
}

/// One console session: its state, cache, hub client, and the channel every worker sends on.
pub struct Session {
    pub app: App,
    pub cache: Option<cache::Cache>,
    pub api: net::Api,
    pub tx: mpsc::UnboundedSender<Msg>,
    pub rx: mpsc::UnboundedReceiver<Msg>,
    pub alert: Alert,
}

impl Session {
    pub fn new(opts: &Options, now: crate::model::Ms) -> Session {
        let (app, cache) = prepare(opts, now);
        let (tx, rx) = mpsc::unbounded_channel();
        Session {
            app,
            cache,
            api: net::Api::new(&opts.server, &opts.token),
            tx,
            rx,
            alert: opts.alert,
        }
    }
}

/// The event loop, generic over the backend: the real terminal or a `TestBackend`.
pub async fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    session: Session,
    side: &mut dyn Side,
    theme: ui::Theme,
) -> Result<App>
where
    B::Error: Send + Sync + 'static,
{
    let Session {
        mut app,
        cache,
        api,
        tx,
        mut rx,
        alert,
    } = session;
    let since = (app.data.last_seq > 0).then_some(app.data.last_seq);
    let stream = tokio::spawn(net::run_stream(api.clone(), since, tx.clone()));
    let ticker = {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                every.tick().await;
                if tx.send(Msg::Tick(crate::model::now_ms())).is_err() {
                    return;
                }
            }
        })
    };
    let mut last_saved = std::time::Instant::now();
    let mut snapshot_dirty = false;
    terminal.draw(|f| app.draw(f, &theme))?;
    while let Some(msg) = rx.recv().await {
        let outbox_before = app.data.outbox.len();
        let data_msg = matches!(msg, Msg::Net(_));
        let effects = app.update(msg);
        snapshot_dirty |= data_msg;
        let mut quit = false;
        for e in effects {
            match e {
                Effect::Api(call) => {
                    let (api, tx) = (api.clone(), tx.clone());
                    tokio::spawn(async move { api.execute(call, tx).await });
                }
                Effect::Notify(n) => side.notify(&n, alert),
                Effect::Copy(text) => side.copy(&text),
                Effect::OpenEditor(text) => {
                    if let Some(edited) = side.edit(&text) {
                        let _ = tx.send(Msg::Net(msg::NetEvent::EditorDone(edited)));
                    }
                    terminal.clear()?;
                    app.dirty = true;
                }
                Effect::Quit => quit = true,
            }
        }
        if let Some(c) = &cache {
            if app.data.outbox.len() != outbox_before {
                if let Err(e) = c.save_outbox(&app.data.outbox) {
                    tracing::error!("cannot save the outbox: {e:#}");
                }
            }
            if snapshot_dirty && (quit || last_saved.elapsed().as_secs() >= 5) {
                if let Err(e) = c.save_snapshot(&app.data.snapshot()) {
                    tracing::warn!("cannot save the cache: {e:#}");
                }
                snapshot_dirty = false;
                last_saved = std::time::Instant::now();
            }
        }
        if quit {
            break;
        }
        if app.dirty {
            terminal.draw(|f| app.draw(f, &theme))?;
            app.dirty = false;
        }
    }
    stream.abort();
    ticker.abort();
    if let Some(c) = &cache {
        let _ = c.save_snapshot(&app.data.snapshot());
        let _ = c.save_outbox(&app.data.outbox);
    }
    Ok(app)
}

/// Runs the console on the real terminal until the user quits (or SIGHUP/SIGTERM).
pub async fn run(opts: Options) -> Result<()> {
    run_with_side(opts, &mut TerminalSide).await
}

pub async fn run_with_side(opts: Options, side: &mut dyn Side) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        anyhow::bail!("the console needs an interactive terminal; scripts can use the hub's API (docs/api.md)");
    }
    let api = net::Api::new(&opts.server, &opts.token);
    // Fail fast with a clear message rather than an empty screen.
    let unreachable = match api.me().await {
        Err(net::ApiErr::Status { status: 401, .. }) => {
            anyhow::bail!(
                "the hub at {} refused this token — get a new one with `sop login --server {}`",
                opts.server,
                opts.server
            )
        }
        Err(e) => Some(e),
        Ok(_) => None,
    };
    let session = Session::new(&opts, crate::model::now_ms());
    if let Some(e) = unreachable {
        // Offline is fine with cached data to show; without it there is nothing to open.
        if session.app.data.me.is_none() {
            anyhow::bail!("cannot reach the hub at {}: {e}", opts.server);
        }
        tracing::warn!("starting offline with cached data: {e}");
    }
    let tx = session.tx.clone();
    terminal_guard::install(opts.mouse)?;
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut terminal = Terminal::new(backend).context("cannot start the terminal")?;
    terminal.clear()?;
    input::spawn(tx.clone());
    spawn_signals(tx.clone());
    let theme = ui::Theme {
        color: opts.color,
        utc_offset_min: local_offset_min(),
    };
    let result = run_loop(&mut terminal, session, side, theme).await;
    // Stop reading the terminal: once it is gone, reads would fail in a loop.
    input::stop();
    terminal_guard::restore();
    result.map(|_| ())
}

pub fn local_offset_min() -> i32 {
    chrono::Local::now().offset().local_minus_utc() / 60
}

/// The terminal's input, read on a thread of its own that can be paused while `$EDITOR` owns the
/// keyboard (gitui's shape: poll with a timeout, never block in a read while paused).
pub mod input {
    use super::Msg;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tokio::sync::mpsc;

    static PAUSED: AtomicBool = AtomicBool::new(false);
    /// Set by the reader once it has seen `PAUSED` and stopped touching the terminal.
    static IDLE: AtomicBool = AtomicBool::new(false);
    static STOP: AtomicBool = AtomicBool::new(false);

    pub fn spawn(tx: mpsc::UnboundedSender<Msg>) {
        STOP.store(false, Ordering::SeqCst);
        std::thread::spawn(move || loop {
            if STOP.load(Ordering::SeqCst) || tx.is_closed() {
                return;
            }
            if PAUSED.load(Ordering::SeqCst) {
                IDLE.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            IDLE.store(false, Ordering::SeqCst);
            let event = match crossterm::event::poll(Duration::from_millis(50)) {
                Ok(false) => continue,
                Ok(true) => crossterm::event::read(),
                Err(e) => Err(e),
            };
            match event {
                Ok(ev) => {
                    if tx.send(Msg::Term(ev)).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    // The terminal is gone (SSH dropped): leave like SIGHUP.
                    let _ = tx.send(Msg::Shutdown);
                    return;
                }
            }
        });
    }

    /// Stops reading the terminal; returns once the reader is idle.
    pub fn pause() {
        PAUSED.store(true, Ordering::SeqCst);
        for _ in 0..100 {
            if IDLE.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn resume() {
        IDLE.store(false, Ordering::SeqCst);
        PAUSED.store(false, Ordering::SeqCst);
    }

    pub fn stop() {
        STOP.store(true, Ordering::SeqCst);
    }
}

fn spawn_signals(tx: mpsc::UnboundedSender<Msg>) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut hup), Ok(mut term)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = hup.recv() => {}
            _ = term.recv() => {}
        }
        let _ = tx.send(Msg::Shutdown);
    });
}

/// Raw mode, alternate screen and bracketed paste on; restored on exit, on panic, and around
/// `$EDITOR`.
pub mod terminal_guard {
    use crossterm::{event, execute, terminal};
    use std::sync::atomic::{AtomicBool, Ordering};

    static MOUSE: AtomicBool = AtomicBool::new(false);

    pub fn install(mouse: bool) -> std::io::Result<()> {
        MOUSE.store(mouse, Ordering::SeqCst);
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            default(info);
        }));
        resume();
        Ok(())
    }

    pub fn resume() {
        let _ = terminal::enable_raw_mode();
        let mut out = std::io::stdout();
        let _ = execute!(
            out,
            terminal::EnterAlternateScreen,
            event::EnableBracketedPaste
        );
        if MOUSE.load(Ordering::SeqCst) {
            let _ = execute!(out, event::EnableMouseCapture);
        }
    }

    pub fn suspend() {
        restore();
    }

    pub fn restore() {
        let mut out = std::io::stdout();
        if MOUSE.load(Ordering::SeqCst) {
            let _ = execute!(out, event::DisableMouseCapture);
        }
        let _ = execute!(
            out,
            event::DisableBracketedPaste,
            terminal::LeaveAlternateScreen,
            crossterm::cursor::Show
        );
        let _ = terminal::disable_raw_mode();
    }
}

#[cfg(test)]
mod tests;

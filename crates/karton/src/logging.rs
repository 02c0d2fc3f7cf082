//! Logging as runc does it: `--log FILE` with `--log-format json` writes one JSON object a
//! line ({"level","msg","time"}), which engines read to show a failed call's reason.
//! Errors always reach stderr as well.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::{Global, LogFormat};

struct Sink {
    file: Option<Mutex<File>>,
    json: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

pub fn init(g: &Global) -> anyhow::Result<()> {
    let file = match &g.log {
        Some(p) => Some(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("--log {}: {e}: pass a writable file", p.display()))?,
        )),
        None => None,
    };
    let _ = SINK.set(Sink { file, json: g.log_format == LogFormat::Json });
    let max = if g.debug { Level::DEBUG } else { Level::WARN };
    let subscriber = tracing_subscriber::registry().with(LineLayer { max });
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

/// Writes the error that ends the command: to the log and to stderr.
pub fn error(msg: &str) {
    write_line(Level::ERROR, msg, true);
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

fn write_line(level: Level, msg: &str, always_stderr: bool) {
    let sink = SINK.get();
    let to_file = sink.and_then(|s| s.file.as_ref());
    let json = sink.is_some_and(|s| s.json);
    let line = if json {
        serde_json::json!({"level": level_name(level), "msg": msg, "time": karton_runtime::util::rfc3339_now()}).to_string()
    } else {
        format!("karton: {}: {msg}", level_name(level))
    };
    if let Some(f) = to_file {
        if let Ok(mut f) = f.lock() {
            let _ = writeln!(f, "{line}");
        }
    }
    if to_file.is_none() || always_stderr {
        if always_stderr && level == Level::ERROR {
            eprintln!("karton: {msg}");
        } else {
            eprintln!("{line}");
        }
    }
}

struct LineLayer {
    max: Level,
}

struct MsgVisitor(String);

impl Visit for MsgVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.max {
            return;
        }
        let mut v = MsgVisitor(String::new());
        event.record(&mut v);
        write_line(level, &v.0, false);
    }
}

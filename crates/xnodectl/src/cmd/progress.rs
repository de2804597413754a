//! An apply's progress as it happens, from xnoded's stream of changes
//! (`GET /v1/events`): on a terminal a spinner per workload the health gate waits on
//! (indicatif), otherwise a line at each change.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use xnode_api::Source;
use xnode_api::events::{self, Event};
use xnode_api::node::{Applying, Gated};

use super::status::{gated_word, phase_word};

/// How the progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// A spinner per gated workload.
    Terminal,
    /// A line at each change.
    Lines,
    /// Not at all: only the generation is looked for.
    Nothing,
}

/// What the progress shows, for as long as it is not stopped.
struct Shown {
    show: Show,
    terminal: Option<(MultiProgress, BTreeMap<String, ProgressBar>)>,
    /// The last line printed, when not on a terminal.
    said: String,
    /// The generation the apply was recorded as, once known.
    generation: Option<u64>,
    stopped: bool,
}

/// The progress of the apply under way, shown beside its call; `stop` before saying
/// how it ended.
pub struct Progress {
    shown: Arc<Mutex<Shown>>,
    recorded: std::sync::mpsc::Receiver<u64>,
}

impl Progress {
    /// Follows the node's changes on a thread of its own; it ends with the process (a
    /// stream with nothing to say holds its thread until xnoded's next keep-alive).
    pub fn start(socket: &Path, show: Show, spec: &str) -> Progress {
        let shown = Arc::new(Mutex::new(Shown {
            show,
            terminal: (show == Show::Terminal).then(|| (MultiProgress::new(), BTreeMap::new())),
            said: String::new(),
            generation: None,
            stopped: false,
        }));
        let (tell, recorded) = std::sync::mpsc::channel();
        let (ready, started) = std::sync::mpsc::channel();
        let (socket, spec) = (socket.to_owned(), spec.to_owned());
        let theirs = Arc::clone(&shown);
        std::thread::spawn(move || {
            // This apply's generation: a new one, made through the API, of this spec.
            let mut before = u64::MAX;
            let followed = xnode_api::follow(&socket, events::PATH, |event: Event| {
                let mut shown = theirs.lock().unwrap_or_else(PoisonError::into_inner);
                if shown.stopped {
                    return false;
                }
                match event {
                    Event::Snapshot { status } => {
                        before = status.generation.map_or(0, |g| g.number);
                        let _ = ready.send(());
                    }
                    Event::Generation { generation: g }
                        if shown.generation.is_none()
                            && g.number > before
                            && g.source == Source::Api
                            && g.node_hash() == spec =>
                    {
                        shown.generation = Some(g.number);
                        let _ = tell.send(g.number);
                    }
                    // Another's apply is not shown as this one's.
                    Event::Progress { applying }
                        if shown.generation.is_none()
                            || applying.generation == shown.generation =>
                    {
                        shown.show(&applying);
                    }
                    _ => {}
                }
                true
            });
            if let Err(e) = followed {
                eprintln!("(the apply's progress cannot be shown: {e})");
            }
        });
        // The apply is asked for once the stream is under way, so none of its progress
        // is missed (a stream that cannot be had is not waited for long).
        let _ = started.recv_timeout(std::time::Duration::from_secs(5));
        Progress { shown, recorded }
    }

    /// Waits up to `wait` for the generation the apply is recorded as.
    pub fn recorded(&self, wait: std::time::Duration) -> Option<u64> {
        self.recorded.recv_timeout(wait).ok()
    }

    /// Stops showing: the spinners are cleared, so what follows is printed plainly.
    pub fn stop(self) {
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        shown.stopped = true;
        if let Some((multi, bars)) = &shown.terminal {
            for bar in bars.values() {
                bar.finish_and_clear();
            }
            let _ = multi.clear();
        }
    }
}

impl Shown {
    fn show(&mut self, applying: &Applying) {
        if self.show == Show::Nothing {
            return;
        }
        let Some((multi, bars)) = &mut self.terminal else {
            let line = line(applying);
            if line != self.said {
                // A closed pipe only ends what is shown.
                let _ = super::print(&format!("  {line}\n"));
                self.said = line;
            }
            return;
        };
        let style = ProgressStyle::with_template("  {spinner} {prefix:<12} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let head = bars.entry(String::new()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        head.set_prefix("apply");
        head.set_message(format!(
            "{} ({})",
            applying
                .generation
                .map_or("a new generation".to_owned(), |n| format!("generation {n}")),
            phase_word(applying.phase)
        ));
        for (name, gated) in &applying.workloads {
            let bar = bars.entry(name.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
                bar.set_prefix(name.clone());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            });
            let message = match gated {
                Gated::Waiting { why } | Gated::Unhealthy { why } => {
                    format!("{}: {why}", gated_word(gated))
                }
                Gated::Healthy | Gated::Moved => gated_word(gated).to_owned(),
            };
            bar.set_message(message);
            if !matches!(gated, Gated::Waiting { .. }) {
                bar.disable_steady_tick();
            }
        }
    }
}

/// The apply under way as a line: its generation, its phase, and the workloads not
/// yet healthy.
pub fn line(applying: &Applying) -> String {
    let generation = applying
        .generation
        .map_or("a new generation".to_owned(), |n| format!("generation {n}"));
    let mut line = format!("applying {generation} ({})", phase_word(applying.phase));
    let waiting: Vec<String> = applying
        .workloads
        .iter()
        .filter(|(_, g)| **g != Gated::Healthy)
        .map(|(name, g)| format!("{name} {}", gated_word(g)))
        .collect();
    if !waiting.is_empty() {
        line.push_str(&format!(": {}", waiting.join(", ")));
    }
    line
}

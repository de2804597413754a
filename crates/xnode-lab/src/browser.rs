//! A headless Chromium (Debian's `chromium`), driven over the DevTools protocol, for
//! the console's tests: it loads pages, runs script in them as a user's clicks would,
//! and takes screenshots.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::WebSocket;

use crate::LabError;

/// A browser with one page, closed when dropped.
pub struct Browser {
    page: WebSocket<TcpStream>,
    next: u64,
    // Last, so the page's socket closes before the process goes.
    _process: Process,
}

/// Chromium's process and profile, gone when dropped, whatever failed on the way.
struct Process {
    child: Child,
    profile: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Browsers started by this process, for their profiles' names.
static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn failed(what: &str, detail: impl ToString) -> LabError {
    LabError::Command {
        what: what.into(),
        detail: detail.to_string(),
    }
}

impl Browser {
    /// Starts Chromium headless, with a fresh profile. The node's certificate is
    /// self-signed, so certificate errors are let through (the test pins nothing; the
    /// fingerprint is checked by the remote API's own test).
    pub fn start() -> Result<Browser, LabError> {
        let profile = std::env::temp_dir().join(format!(
            "xnode-browser-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).map_err(|source| LabError::Io {
            context: format!("creating {}", profile.display()),
            source,
        })?;
        let child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--ignore-certificate-errors",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                LabError::Unavailable(format!(
                    "cannot run chromium ({e}); scripts/setup installs it"
                ))
            })?;
        let mut browser = Browser::connect(Process { child, profile })?;
        browser.call("Page.enable", json!({}))?;
        browser.call("Runtime.enable", json!({}))?;
        Ok(browser)
    }

    fn connect(process: Process) -> Result<Browser, LabError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(process.profile.join("DevToolsActivePort"))
                && let Some(port) = text.lines().next().and_then(|p| p.parse::<u16>().ok())
            {
                break port;
            }
            if Instant::now() > deadline {
                return Err(failed("starting chromium", "no DevTools port within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // The page's own socket, from the target list (the page may come a moment
        // after the port).
        let url = loop {
            let list = http_get(port, "/json/list")?;
            let targets: Value = serde_json::from_str(&list).unwrap_or_default();
            let page = targets
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_owned);
            match page {
                Some(url) => break url,
                None if Instant::now() > deadline => return Err(failed("finding the page", list)),
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| failed("connecting to chromium", e))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| failed("connecting to chromium", e))?;
        let (page, _) =
            tungstenite::client(url.as_str(), stream).map_err(|e| failed("opening the page", e))?;
        Ok(Browser {
            page,
            next: 0,
            _process: process,
        })
    }

    /// One DevTools command, and its result.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, LabError> {
        self.next += 1;
        let id = self.next;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.page
            .send(tungstenite::Message::text(message))
            .map_err(|e| failed(method, e))?;
        loop {
            let message = self.page.read().map_err(|e| failed(method, e))?;
            let Ok(text) = message.to_text() else {
                continue;
            };
            let Ok(reply) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if reply["id"] != id {
                continue;
            }
            if !reply["error"].is_null() {
                return Err(failed(method, &reply["error"]));
            }
            return Ok(reply["result"].clone());
        }
    }

    /// Loads `url`.
    pub fn navigate(&mut self, url: &str) -> Result<(), LabError> {
        self.call("Page.navigate", json!({"url": url})).map(drop)
    }

    /// Runs `script` in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, script: &str) -> Result<Value, LabError> {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": script, "awaitPromise": true, "returnByValue": true}),
        )?;
        if !result["exceptionDetails"].is_null() {
            return Err(failed(
                "running script in the page",
                &result["exceptionDetails"],
            ));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until `script` gives something truthy, and returns it.
    pub fn wait_for(
        &mut self,
        what: &str,
        script: &str,
        within: Duration,
    ) -> Result<Value, LabError> {
        let deadline = Instant::now() + within;
        loop {
            // A page between two documents cannot run script: not yet, then.
            let value = self.eval(script).unwrap_or_default();
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            if truthy {
                return Ok(value);
            }
            if Instant::now() > deadline {
                let page = self.eval("document.body.innerText").unwrap_or_default();
                return Err(failed(
                    &format!("waiting for {what}"),
                    format!(
                        "not within {within:?}; the page says:\n{}",
                        page.as_str().unwrap_or("")
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The page's size: a phone's, or a desktop's.
    pub fn resize(&mut self, width: u32, height: u32, mobile: bool) -> Result<(), LabError> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .map(drop)
    }

    /// A PNG of the page as shown, written to `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), LabError> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(|e| failed("taking a screenshot", e))?;
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, png).map_err(|source| LabError::Io {
            context: format!("writing {}", path.display()),
            source,
        })
    }
}

/// A GET on chromium's DevTools HTTP endpoint, which keeps the connection open: the
/// body is read to its length.
fn http_get(port: u16, path: &str) -> Result<String, LabError> {
    let fail = |e: std::io::Error| failed("asking chromium", e);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(fail)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").map_err(fail)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Ok(body.to_owned());
            }
        }
    }
    Err(failed("asking chromium", "the answer ended early"))
}

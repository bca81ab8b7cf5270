//! Fake DingTalk, WeCom and Feishu robots and a webhook receiver, on a loopback port, that
//! check the documented protocol exactly: DingTalk's signed URL (millisecond timestamp,
//! HMAC-SHA256 of `timestamp\nsecret`, Base64, URL-encoded), Feishu's signature in the
//! body, timestamps within an hour, keywords, body caps and per-robot rate limits, and
//! answer with the services' own error codes (HTTP 200 with `errcode`). Tests script
//! extra answers (a 500, a throttle) and read back every request.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// What the fake answered (status, body).
    pub answer: (u16, String),
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Whom a DingTalk message `@`s as the group sees it: DingTalk reads `at` only in
    /// `text` and `markdown` messages (an actionCard's `at` is dropped), and in markdown a
    /// mobile is shown as a mention only when `@mobile` is also in the text.
    pub fn dingtalk_mentions(&self) -> Vec<String> {
        let v = self.json();
        let text = match v["msgtype"].as_str() {
            Some("markdown") => v["markdown"]["text"].as_str().unwrap_or(""),
            Some("text") => v["text"]["content"].as_str().unwrap_or(""),
            _ => return Vec::new(),
        };
        let mut out: Vec<String> = v["at"]["atMobiles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str())
            .filter(|m| v["msgtype"] == "text" || text.contains(&format!("@{m}")))
            .map(str::to_string)
            .collect();
        if v["at"]["isAtAll"] == true {
            out.push("all".to_string());
        }
        out
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The robots' settings, as a robot's owner would set them in the chat app.
#[derive(Clone)]
pub struct Settings {
    pub dingtalk_token: String,
    pub dingtalk_secret: String,
    /// A keyword the message must contain (DingTalk's 自定义关键词), if set.
    pub dingtalk_keyword: Option<String>,
    pub wecom_key: String,
    pub feishu_token: String,
    pub feishu_secret: String,
    pub webhook_secret: String,
    /// Posts per rolling minute before the throttle answer.
    pub per_minute: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dingtalk_token: "dt-token-0001".into(),
            dingtalk_secret: "SECdingtalk-secret-0001".into(),
            dingtalk_keyword: None,
            wecom_key: "wecom-key-0001".into(),
            feishu_token: "fs-token-0001".into(),
            feishu_secret: "feishu-secret-0001".into(),
            webhook_secret: "webhook-secret-0001".into(),
            per_minute: 20,
        }
    }
}

struct State {
    settings: Settings,
    /// Files uploaded to WeCom: (media_id, file name, bytes).
    uploads: Vec<(String, String, Vec<u8>)>,
    received: Vec<Received>,
    /// Answers to give instead of the normal ones, in order: (status, body).
    scripted: VecDeque<(u16, String)>,
    /// When each robot posted, for the rate limits.
    posts: Vec<(String, Instant)>,
}

pub struct FakeRobots {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeRobots {
    pub fn start(settings: Settings) -> FakeRobots {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            settings,
            uploads: Vec::new(),
            received: Vec::new(),
            scripted: VecDeque::new(),
            posts: Vec::new(),
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve_connection(stream, &st);
                });
            }
        });
        FakeRobots { port, state }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn dingtalk_webhook(&self) -> String {
        let token = self.state.lock().unwrap().settings.dingtalk_token.clone();
        format!("{}/robot/send?access_token={token}", self.base())
    }

    pub fn wecom_webhook(&self) -> String {
        let key = self.state.lock().unwrap().settings.wecom_key.clone();
        format!("{}/cgi-bin/webhook/send?key={key}", self.base())
    }

    pub fn feishu_webhook(&self) -> String {
        let token = self.state.lock().unwrap().settings.feishu_token.clone();
        format!("{}/open-apis/bot/v2/hook/{token}", self.base())
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/hooks/ferry", self.base())
    }

    /// The next answers, before any check.
    pub fn script(&self, status: u16, body: &str) {
        self.state
            .lock()
            .unwrap()
            .scripted
            .push_back((status, body.to_string()));
    }

    /// The files uploaded to the WeCom robot: (file name, bytes).
    pub fn uploads(&self) -> Vec<(String, Vec<u8>)> {
        self.state
            .lock()
            .unwrap()
            .uploads
            .iter()
            .map(|(_, n, b)| (n.clone(), b.clone()))
            .collect()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

fn serve_connection(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), parse_query(q)),
            None => (target.clone(), Vec::new()),
        };
        let mut st = state.lock().unwrap();
        let answer = if method != "POST" {
            (405, String::new())
        } else if let Some(scripted) = st.scripted.pop_front() {
            scripted
        } else {
            answer(&mut st, &path, &query, &headers, &body)
        };
        st.received.push(Received {
            path,
            query,
            headers,
            body,
            answer: answer.clone(),
        });
        drop(st);
        let reason = if answer.0 == 200 { "OK" } else { "Error" };
        write!(
            stream,
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            answer.0,
            answer.1.len(),
            answer.1
        )?;
        stream.flush()?;
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn get<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn ok_json(code_field: &str, code: i64, msg: &str) -> (u16, String) {
    (
        200,
        serde_json::json!({ code_field: code, "errmsg": msg, "msg": msg }).to_string(),
    )
}

/// Counts a post for `robot`; `true` when it is over the per-minute limit.
fn over_rate(st: &mut State, robot: &str) -> bool {
    let now = Instant::now();
    st.posts
        .retain(|(_, t)| now.duration_since(*t) < Duration::from_secs(60));
    let n = st.posts.iter().filter(|(r, _)| r == robot).count();
    st.posts.push((robot.to_string(), now));
    n >= st.settings.per_minute
}

/// The file of a `multipart/form-data` body's `media` part: (filename, bytes), checked
/// against the part's `filelength`.
fn multipart_file(headers: &[(String, String)], body: &[u8]) -> Option<(String, Vec<u8>)> {
    let ct = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))?
        .1
        .clone();
    let boundary = ct.split("boundary=").nth(1)?.trim_matches('"').to_string();
    let open = format!("--{boundary}\r\n");
    let close = format!("\r\n--{boundary}--");
    let rest = body.strip_prefix(open.as_bytes())?;
    let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(rest[..head_end].to_vec()).ok()?;
    let data = &rest[head_end + 4..];
    let end = data
        .windows(close.len())
        .rposition(|w| w == close.as_bytes())?;
    let data = data[..end].to_vec();
    if !head.contains("name=\"media\"") {
        return None;
    }
    let name = head
        .split("filename=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    let length: usize = head
        .split("filelength=")
        .nth(1)?
        .split(['\r', ';'])
        .next()?
        .trim()
        .parse()
        .ok()?;
    (length == data.len()).then_some((name, data))
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn answer(
    st: &mut State,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String) {
    let s = st.settings.clone();
    let now_ms = chrono::Utc::now().timestamp_millis();
    match path {
        "/robot/send" => {
            if get(query, "access_token") != Some(s.dingtalk_token.as_str()) {
                return ok_json("errcode", 300005, "token is not exist");
            }
            let (Some(ts), Some(sign)) = (get(query, "timestamp"), get(query, "sign")) else {
                return ok_json("errcode", 310000, "sign not match");
            };
            let Ok(ts_ms) = ts.parse::<i64>() else {
                return ok_json("errcode", 310000, "invalid timestamp");
            };
            if (now_ms - ts_ms).abs() > 3_600_000 {
                return ok_json("errcode", 310000, "invalid timestamp");
            }
            let expected = hmac_b64(
                s.dingtalk_secret.as_bytes(),
                format!("{ts}\n{}", s.dingtalk_secret).as_bytes(),
            );
            if sign != expected {
                return ok_json("errcode", 310000, "sign not match");
            }
            if body.len() > 20_000 {
                return ok_json("errcode", 460101, "message too long, exceed 20000 bytes");
            }
            let text = String::from_utf8_lossy(body);
            if let Some(k) = &s.dingtalk_keyword
                && !text.contains(k.as_str())
            {
                return ok_json("errcode", 310000, "keywords not in content");
            }
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let msgtype = v["msgtype"].as_str().unwrap_or("");
            if !matches!(msgtype, "markdown" | "actionCard" | "text") || v[msgtype].is_null() {
                return ok_json("errcode", 40035, "missing or invalid msgtype");
            }
            if over_rate(st, "dingtalk") {
                return ok_json(
                    "errcode",
                    130101,
                    "send too fast, exceed 20 times per minute",
                );
            }
            ok_json("errcode", 0, "ok")
        }
        "/cgi-bin/webhook/upload_media" => {
            if get(query, "key") != Some(s.wecom_key.as_str()) {
                return ok_json("errcode", 93000, "invalid webhook url");
            }
            if get(query, "type") != Some("file") {
                return ok_json("errcode", 40004, "invalid media type");
            }
            let Some((name, bytes)) = multipart_file(headers, body) else {
                return ok_json("errcode", 44001, "empty media data");
            };
            if bytes.len() > 20 * 1024 * 1024 {
                return ok_json("errcode", 40058, "media size out of limit");
            }
            let media_id = format!("media-{}", st.uploads.len() + 1);
            st.uploads.push((media_id.clone(), name, bytes));
            (
                200,
                serde_json::json!({ "errcode": 0, "errmsg": "ok", "type": "file", "media_id": media_id, "created_at": "1700000000" })
                    .to_string(),
            )
        }
        "/cgi-bin/webhook/send" => {
            if get(query, "key") != Some(s.wecom_key.as_str()) {
                return ok_json("errcode", 93000, "invalid webhook url");
            }
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            if v["msgtype"] == "file" {
                let id = v["file"]["media_id"].as_str().unwrap_or("");
                if !st.uploads.iter().any(|(m, _, _)| m == id) {
                    return ok_json("errcode", 40007, "invalid media_id");
                }
                if over_rate(st, "wecom") {
                    return ok_json("errcode", 45009, "api freq out of limit");
                }
                return ok_json("errcode", 0, "ok");
            }
            let content = v["markdown"]["content"].as_str().unwrap_or("");
            if v["msgtype"] != "markdown" || content.is_empty() {
                return ok_json("errcode", 40008, "invalid message type");
            }
            if content.len() > 4096 {
                return ok_json("errcode", 40058, "markdown.content exceed max length 4096");
            }
            if over_rate(st, "wecom") {
                return ok_json("errcode", 45009, "api freq out of limit");
            }
            ok_json("errcode", 0, "ok")
        }
        p if p.starts_with("/open-apis/bot/v2/hook/") => {
            if p.rsplit('/').next() != Some(s.feishu_token.as_str()) {
                return ok_json(
                    "code",
                    19001,
                    "param invalid: incoming webhook access token invalid",
                );
            }
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let (Some(ts), Some(sign)) = (v["timestamp"].as_str(), v["sign"].as_str()) else {
                return ok_json(
                    "code",
                    19021,
                    "sign match fail or timestamp is not within one hour from current time",
                );
            };
            let ts_s: i64 = ts.parse().unwrap_or(0);
            let expected = hmac_b64(format!("{ts}\n{}", s.feishu_secret).as_bytes(), b"");
            if (now_ms / 1000 - ts_s).abs() > 3600 || sign != expected {
                return ok_json(
                    "code",
                    19021,
                    "sign match fail or timestamp is not within one hour from current time",
                );
            }
            if body.len() > 20_000 {
                return ok_json("code", 9499, "request body too large");
            }
            if v["msg_type"] != "interactive" || v["card"]["elements"].as_array().is_none() {
                return ok_json("code", 19002, "params error, msg_type need");
            }
            if over_rate(st, "feishu") {
                return ok_json("code", 9499, "too many request");
            }
            ok_json("code", 0, "success")
        }
        "/hooks/ferry" => {
            let header = |n: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
            };
            let (Some(ts), Some(sig)) = (header("X-Ferry-Timestamp"), header("X-Ferry-Signature"))
            else {
                return (401, r#"{"error":"unsigned"}"#.into());
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(s.webhook_secret.as_bytes()).unwrap();
            mac.update(format!("{ts}.").as_bytes());
            mac.update(body);
            let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
            let fresh = ts
                .parse::<i64>()
                .is_ok_and(|t| (now_ms / 1000 - t).abs() <= 300);
            if sig != expected || !fresh {
                return (401, r#"{"error":"bad signature"}"#.into());
            }
            (200, r#"{"ok":true}"#.into())
        }
        _ => (404, r#"{"error":"not found"}"#.into()),
    }
}

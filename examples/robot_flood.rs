//! Robot flood benchmark (not part of CI; `bash benches/robot_flood.sh`): N notices for one
//! DingTalk robot go through ferry's real robot queue and DingTalk channel code to a
//! loopback robot that answers like DingTalk and counts every post. Two scenarios:
//!
//! - burst: all N notices queued at the same moment;
//! - trickle: one notice every 200 ms (N × 200 ms), the queue backing up once the first
//!   20 posts of the minute are used.
//!
//! Prints, per scenario: posts made, the most posts in any rolling 60 s, how many notices
//! arrived (each notice's marker found in exactly one post), total time, and the
//! service's answers (any `130101` would mean the limit was exceeded).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::config::Secret;
use ferry::notify::dingtalk::{self, DingTalk};
use ferry::notify::robot::{self, Notice, Robot};

/// (arrival time, body) of each post the fake robot received.
type Posts = Arc<Mutex<Vec<(Instant, String)>>>;

/// A loopback robot: answers `errcode 0`, or `130101` once 20 posts fell within 60 s.
fn fake_robot() -> (u16, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts: Posts = Arc::new(Mutex::new(Vec::new()));
    let p = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let p = p.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    let now = Instant::now();
                    let answer = {
                        let mut posts = p.lock().unwrap();
                        let recent = posts
                            .iter()
                            .filter(|(t, _)| now.duration_since(*t) < Duration::from_secs(60))
                            .count();
                        posts.push((now, String::from_utf8_lossy(&body).to_string()));
                        if recent >= 20 {
                            r#"{"errcode":130101,"errmsg":"send too fast"}"#
                        } else {
                            r#"{"errcode":0,"errmsg":"ok"}"#
                        }
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                }
            });
        }
    });
    (port, posts)
}

fn notice(scenario: &str, i: usize) -> Notice {
    Notice {
        title: format!("daily_sales_{i}: succeeded"),
        text: format!(
            "### daily_sales_{i}: succeeded\n- Rows: 12,345\n- File: daily_sales_{i}.xlsx (1.2 MB)\n- marker {scenario}-{i:04}-end"
        ),
        mentions: Vec::new(),
        mention_all: false,
        button: None,
        files: Vec::new(),
    }
}

async fn scenario(name: &str, n: usize, spacing: Duration) {
    let (port, posts) = fake_robot();
    let webhook = format!("http://127.0.0.1:{port}/robot/send?access_token=bench-{name}");
    let robots = Arc::new(robot::Robots::default());
    let client = robots.http_client(Duration::from_secs(30)).unwrap();
    let bot: Arc<dyn Robot> = Arc::new(DingTalk::new(client, Secret::new(webhook.clone()), None));
    let key = robot::robot_key("dingtalk", &webhook, None);
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..n {
        let bot = bot.clone();
        let key = key.clone();
        let robots = robots.clone();
        let notice = notice(name, i);
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(spacing * i as u32).await;
            robots.deliver(&key, dingtalk::LIMITS, bot, notice).await
        }));
    }
    let mut failed = 0;
    for h in handles {
        if h.await.unwrap().is_err() {
            failed += 1;
        }
    }
    let took = start.elapsed();
    let posts = posts.lock().unwrap().clone();
    let mut max_window = 0;
    for (i, (t, _)) in posts.iter().enumerate() {
        let n = posts[i..]
            .iter()
            .take_while(|(u, _)| u.duration_since(*t) < Duration::from_secs(60))
            .count();
        max_window = max_window.max(n);
    }
    let delivered = (0..n)
        .filter(|i| {
            let marker = format!("marker {name}-{i:04}-end");
            posts.iter().filter(|(_, b)| b.contains(&marker)).count() == 1
        })
        .count();
    let merged = posts
        .iter()
        .filter(|(_, b)| b.contains("notices** (merged"))
        .count();
    println!(
        "{name:8} notices={n} posts={} merged_posts={merged} max_posts_in_60s={max_window} delivered={delivered}/{n} failed={failed} took={:.1}s",
        posts.len(),
        took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    scenario("burst", n, Duration::ZERO).await;
    scenario("trickle", n, Duration::from_millis(200)).await;
}

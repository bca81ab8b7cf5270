//! What the chat robots (DingTalk, WeCom, Feishu) share: one HTTP client, and a send queue
//! per robot that honours its rate limit, merges notices when the queue backs up, pauses
//! after the service says "too fast", and keeps every body under the service's size cap.
//!
//! A robot is identified by its webhook URL (hashed, so the token is not kept twice): two
//! channels or task overrides that point at the same robot share one queue, because the
//! service counts per robot. The queues and clients live in a [`Robots`], owned by the
//! channel registry (`super::Registry`) and kept across config reloads; several ferry
//! processes posting to one robot each keep their own count.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::NotifyError;

/// One notice for a robot: what a rendered [`super::Message`] becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub title: String,
    /// Markdown (each service's subset).
    pub text: String,
    /// Mobiles or user ids to `@`.
    pub mentions: Vec<String>,
    pub mention_all: bool,
    /// A button under the text: (label, URL), e.g. a download link.
    pub button: Option<(String, String)>,
    /// Files to send after the text (WeCom only): each is one more post. A notice with
    /// files is never merged with others.
    pub files: Vec<std::path::PathBuf>,
}

/// How a post to a robot went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// The service said "too fast": the robot is paused for [`Limits::pause`].
    Throttled(String),
    /// Worth trying again later (5xx, 429, connection trouble).
    Retryable(String),
    /// Trying again cannot help (bad signature, keyword missing, robot deleted).
    Permanent(String),
}

/// A chat service's endpoint for one robot.
#[async_trait]
pub trait Robot: Send + Sync + 'static {
    /// Posts one notice (possibly merged from several); `Ok` carries a short receipt.
    async fn post(&self, notice: &Notice) -> Result<String, PostError>;
}

/// A service's limits for one robot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Posts allowed in any rolling minute.
    pub per_minute: usize,
    /// How long the robot is left alone after the service throttled it.
    pub pause: Duration,
    /// Most bytes of notice text in one post (the body cap minus room for the envelope).
    pub max_text: usize,
}

const WINDOW: Duration = Duration::from_secs(60);

type Reply = oneshot::Sender<Result<String, NotifyError>>;

/// A notice waiting for its robot, with everyone waiting for it (several after a merge).
struct Waiting {
    notice: Notice,
    replies: Vec<Reply>,
}

#[derive(Default)]
struct QueueState {
    /// When the posts of the last minute went out, oldest first.
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
    /// What the service said when it throttled the robot.
    pause_reason: String,
    waiting: Vec<Waiting>,
    worker: bool,
}

/// The send queues of the robots (by [`robot_key`]) and the HTTP clients (by timeout)
/// of one process.
#[derive(Default)]
pub struct Robots {
    queues: Mutex<HashMap<String, Arc<Mutex<QueueState>>>>,
    clients: Mutex<HashMap<Duration, reqwest::Client>>,
    book: Option<PauseBook>,
    /// Per robot: set once its recorded pause has been read from the book. Every sender
    /// waits for it, so that none posts before a recorded pause is known and the
    /// senders keep their order.
    loaded: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<()>>>>,
}

/// Where robot pauses are kept beyond this process: the run store, so that a restart
/// during DingTalk's ten-minute 130101 pause does not post into it.
#[derive(Clone)]
pub struct PauseBook {
    pub store: Arc<dyn crate::store::Store>,
    pub clock: crate::clock::SharedClock,
}

impl PauseBook {
    /// The pause the store holds for `key`, as an instant of this process's timer.
    async fn load(&self, key: &str) -> Option<(Instant, String)> {
        let now = self.clock.now();
        match self.store.pause(key, now).await {
            Ok(Some((until, reason))) => {
                let left = (until - now).to_std().unwrap_or_default();
                Some((Instant::now() + left, reason))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the robot's pause from the run store");
                None
            }
        }
    }

    async fn save(&self, key: &str, pause: Duration, reason: &str) {
        let until = self.clock.now() + chrono::Duration::from_std(pause).unwrap_or_default();
        if let Err(e) = self.store.set_pause(key, until, reason).await {
            tracing::warn!(error = %e, "cannot record the robot's pause in the run store");
        }
    }
}

/// Locks a mutex, taking the data over if a holder panicked: the state guarded here
/// (queues, counters, clients) stays consistent between statements, so one panicking
/// sender must not stop every robot.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The queue key of a robot: a hash of its endpoint and signing secret, never the token
/// itself. A queue posts merged notices with one robot's credentials, so notices for the
/// same endpoint under different secrets must not share a queue.
pub fn robot_key(service: &str, endpoint: &str, secret: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(endpoint.as_bytes());
    if let Some(secret) = secret {
        hasher.update(b"\n");
        hasher.update(secret.as_bytes());
    }
    format!("{service}:{}", hex::encode(&hasher.finalize()[..8]))
}

impl Robots {
    /// Robots whose pauses are kept in `book` as well.
    pub fn with_book(book: PauseBook) -> Robots {
        Robots {
            book: Some(book),
            ..Robots::default()
        }
    }

    /// Sends `notice` through the robot's queue and waits for the outcome. When several
    /// notices wait for the same robot, they go out merged into as few posts as fit.
    pub async fn deliver(
        &self,
        key: &str,
        limits: Limits,
        robot: Arc<dyn Robot>,
        notice: Notice,
    ) -> Result<String, NotifyError> {
        let queue = lock(&self.queues)
            .entry(key.to_string())
            .or_default()
            .clone();
        if let Some(book) = &self.book {
            let loaded = lock(&self.loaded)
                .entry(key.to_string())
                .or_default()
                .clone();
            loaded
                .get_or_init(|| async {
                    if let Some((until, reason)) = book.load(key).await {
                        // A pause recorded by an earlier process (or run) still holds.
                        let mut q = lock(&queue);
                        q.paused_until = Some(until);
                        q.pause_reason = reason;
                    }
                })
                .await;
        }
        let book = self.book.clone().map(|b| (b, key.to_string()));
        deliver_on(queue, limits, robot, notice, book).await
    }

    /// The shared HTTP client (rustls with the ring provider and the system's roots).
    /// One client per timeout, built once (loading the root certificates) and shared, so
    /// that connections are reused between messages.
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        let mut clients = lock(&self.clients);
        if let Some(c) = clients.get(&timeout) {
            return Ok(c.clone());
        }
        // Another part of the program may have installed a provider first; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        clients.insert(timeout, client.clone());
        Ok(client)
    }
}

async fn deliver_on(
    queue: Arc<Mutex<QueueState>>,
    limits: Limits,
    robot: Arc<dyn Robot>,
    notice: Notice,
    book: Option<(PauseBook, String)>,
) -> Result<String, NotifyError> {
    let (reply, outcome) = oneshot::channel();
    let start_worker = {
        let mut q = lock(&queue);
        q.waiting.push(Waiting {
            notice,
            replies: vec![reply],
        });
        !std::mem::replace(&mut q.worker, true)
    };
    if start_worker {
        tokio::spawn(work(queue, limits, robot, book));
    }
    outcome
        .await
        .unwrap_or_else(|_| Err(NotifyError::retryable("the robot queue stopped")))
}

/// Drains a robot's queue: waits for a free slot in the rolling minute, takes everything
/// waiting, merges it into as few notices as fit, posts them, and answers every sender.
async fn work(
    queue: Arc<Mutex<QueueState>>,
    limits: Limits,
    robot: Arc<dyn Robot>,
    book: Option<(PauseBook, String)>,
) {
    loop {
        // Wait for a slot (or the end of a pause) before taking what is waiting, so that
        // notices arriving meanwhile are merged into the next post.
        let wait = {
            let mut q = lock(&queue);
            if q.waiting.is_empty() {
                q.worker = false;
                return;
            }
            // While the service has the robot paused, nothing is posted: waiting notices
            // fail at once as retryable (the delivery ledger tries them again later)
            // instead of holding their runs for the rest of the pause.
            let now = Instant::now();
            if let Some(until) = q.paused_until.filter(|u| *u > now) {
                let left = crate::config::format_duration(std::time::Duration::from_secs(
                    (until - now).as_secs().max(1),
                ));
                let error = NotifyError::retry_after(
                    format!(
                        "not sent: the robot is paused for another {left} ({})",
                        q.pause_reason
                    ),
                    until - now,
                );
                for w in std::mem::take(&mut q.waiting) {
                    for reply in w.replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
                continue;
            }
            slot_wait(&mut q, limits, now)
        };
        if let Some(until) = wait {
            tokio::time::sleep_until(until).await;
            continue;
        }
        let batch = std::mem::take(&mut lock(&queue).waiting);
        for w in merge(batch, limits.max_text) {
            let posts = 1 + w.notice.files.len();
            let wait = slot_wait_for(&mut lock(&queue), limits, Instant::now(), posts);
            if let Some(until) = wait {
                tokio::time::sleep_until(until).await;
            }
            let result = robot.post(&w.notice).await;
            if let (Err(PostError::Throttled(msg)), Some((book, key))) = (&result, &book) {
                book.save(key, limits.pause, msg).await;
            }
            let outcome = {
                let mut q = lock(&queue);
                let now = Instant::now();
                q.sent.extend(std::iter::repeat_n(now, posts));
                match result {
                    Ok(receipt) if w.replies.len() > 1 => Ok(format!(
                        "{receipt} (merged with {} other notices for this robot)",
                        w.replies.len() - 1
                    )),
                    Ok(receipt) => Ok(receipt),
                    Err(PostError::Throttled(msg)) => {
                        q.paused_until = Some(now + limits.pause);
                        q.pause_reason = msg.clone();
                        Err(NotifyError::retry_after(
                            format!(
                                "{msg}; the robot is paused for {}",
                                crate::config::format_duration(limits.pause)
                            ),
                            limits.pause,
                        ))
                    }
                    Err(PostError::Retryable(msg)) => Err(NotifyError::retryable(msg)),
                    Err(PostError::Permanent(msg)) => Err(NotifyError::Permanent(msg)),
                }
            };
            for reply in w.replies {
                let _ = reply.send(outcome.clone());
            }
        }
    }
}

/// `None` when a post may go out now; otherwise when to look again. Forgets posts older
/// than the window and an expired pause.
fn slot_wait(q: &mut QueueState, limits: Limits, now: Instant) -> Option<Instant> {
    slot_wait_for(q, limits, now, 1)
}

/// Like [`slot_wait`] for `posts` posts in a row (a text and its files). More posts than
/// the limit allows in a minute wait for an empty window, then go.
fn slot_wait_for(
    q: &mut QueueState,
    limits: Limits,
    now: Instant,
    posts: usize,
) -> Option<Instant> {
    if let Some(until) = q.paused_until {
        if until > now {
            return Some(until);
        }
        q.paused_until = None;
    }
    while q.sent.front().is_some_and(|t| *t + WINDOW <= now) {
        q.sent.pop_front();
    }
    let limit = limits.per_minute.max(1);
    let room = limit.saturating_sub(q.sent.len());
    if room >= posts.min(limit) {
        return None;
    }
    // The slot frees when enough of the oldest posts leave the window.
    let must_leave = posts.min(limit) - room;
    q.sent.get(must_leave - 1).map(|t| *t + WINDOW)
}

/// Groups waiting notices into posts of at most `max_text` bytes of text, in order. One
/// notice stays as it is (shortened if it alone is too long); several become one digest.
fn merge(batch: Vec<Waiting>, max_text: usize) -> Vec<Waiting> {
    let mut groups: Vec<(Vec<Notice>, Vec<Reply>)> = Vec::new();
    let mut size = 0;
    for w in batch {
        let button = w
            .notice
            .button
            .as_ref()
            .map_or(0, |(l, u)| l.len() + u.len() + 8);
        let len = w.notice.text.len() + SEPARATOR.len() + w.notice.title.len() + 8 + button;
        let mergeable = |n: &Notice| n.files.is_empty();
        match groups.last_mut() {
            Some((notices, replies))
                if size + len <= max_text
                    && mergeable(&w.notice)
                    && notices.iter().all(mergeable) =>
            {
                notices.push(w.notice);
                replies.extend(w.replies);
                size += len;
            }
            _ => {
                size = len + DIGEST_HEAD;
                groups.push((vec![w.notice], w.replies));
            }
        }
    }
    groups
        .into_iter()
        .map(|(notices, replies)| {
            let mut notice = if notices.len() == 1 {
                notices.into_iter().next().expect("one notice")
            } else {
                digest(notices)
            };
            notice.text = shorten(&notice.text, max_text);
            Waiting { notice, replies }
        })
        .collect()
}

/// Room for the digest's first line.
const DIGEST_HEAD: usize = 80;

const SEPARATOR: &str = "\n\n---\n\n";

fn digest(notices: Vec<Notice>) -> Notice {
    let count = notices.len();
    let mut mentions: Vec<String> = Vec::new();
    let mut mention_all = false;
    let mut text = format!("**{count} notices** (merged: the robot's rate limit was reached)");
    for n in notices {
        text.push_str(SEPARATOR);
        text.push_str(&format!("#### {}\n\n", n.title));
        text.push_str(&n.text);
        if let Some((label, url)) = &n.button {
            text.push_str(&format!("\n\n[{label}]({url})"));
        }
        mention_all |= n.mention_all;
        for m in n.mentions {
            if !mentions.contains(&m) {
                mentions.push(m);
            }
        }
    }
    Notice {
        title: format!("ferry: {count} notices"),
        text,
        mentions,
        mention_all,
        button: None,
        files: Vec::new(),
    }
}

/// Cuts `text` to at most `max` bytes (at a character boundary) and says so at the end.
pub fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let note = format!(
        "\n\n… (shortened: the full message was {} bytes, over this robot's limit)",
        text.len()
    );
    let mut cut = max.saturating_sub(note.len());
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{note}", &text[..cut])
}

/// Classifies a transport-level failure (no HTTP answer, or an HTTP error status). The
/// URL is left out of the message: it carries the robot's token.
pub fn http_failure(service: &str, e: reqwest::Error) -> PostError {
    let status = e.status();
    let text = crate::source::error_chain(&e.without_url());
    match status {
        Some(s) if s.as_u16() == 429 || s.is_server_error() => {
            PostError::Retryable(format!("{service} answered HTTP {s}: {text}"))
        }
        Some(s) => PostError::Permanent(format!("{service} answered HTTP {s}: {text}")),
        None => PostError::Retryable(format!("{service} could not be reached: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn notice(i: usize) -> Notice {
        Notice {
            title: format!("task {i}"),
            text: format!("run {i} succeeded"),
            mentions: vec![format!("1380000000{}", i % 2)],
            mention_all: false,
            button: None,
            files: Vec::new(),
        }
    }

    /// Records when each post went out and what it carried.
    struct Recorder {
        posts: Mutex<Vec<(Instant, Notice)>>,
        throttle_first: AtomicUsize,
    }

    #[async_trait]
    impl Robot for Recorder {
        async fn post(&self, notice: &Notice) -> Result<String, PostError> {
            self.posts
                .lock()
                .unwrap()
                .push((Instant::now(), notice.clone()));
            if self.throttle_first.load(Ordering::SeqCst) > 0 {
                self.throttle_first.fetch_sub(1, Ordering::SeqCst);
                return Err(PostError::Throttled("130101 send too fast".into()));
            }
            Ok("sent".into())
        }
    }

    const LIMITS: Limits = Limits {
        per_minute: 20,
        pause: Duration::from_secs(600),
        max_text: 300,
    };

    #[tokio::test(start_paused = true)]
    async fn a_flood_stays_within_the_rate_and_every_notice_arrives() {
        let robot = Arc::new(Recorder {
            posts: Mutex::new(Vec::new()),
            throttle_first: AtomicUsize::new(0),
        });
        let start = Instant::now();
        let robots = Arc::new(Robots::default());
        let mut handles = Vec::new();
        for i in 0..100 {
            let robot = robot.clone() as Arc<dyn Robot>;
            let robots = robots.clone();
            handles.push(tokio::spawn(async move {
                // Notices trickle in, one every 200 ms, for 20 seconds.
                tokio::time::sleep(Duration::from_millis(200 * i as u64)).await;
                robots.deliver("test:flood", LIMITS, robot, notice(i)).await
            }));
        }
        for h in handles {
            assert!(h.await.unwrap().is_ok());
        }
        let posts = robot.posts.lock().unwrap().clone();
        // Every notice is in exactly one post.
        let mut seen: Vec<usize> = Vec::new();
        for (_, n) in &posts {
            for i in 0..100 {
                if n.text.contains(&format!("run {i} succeeded"))
                    && !n.text.contains(&format!("run {i}0 succeeded"))
                {
                    seen.push(i);
                }
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 100, "{posts:#?}");
        // No rolling minute holds more than 20 posts.
        for (i, (t, _)) in posts.iter().enumerate() {
            let in_window = posts[i..]
                .iter()
                .take_while(|(u, _)| *u < *t + WINDOW)
                .count();
            assert!(in_window <= 20, "{in_window} posts in a minute");
        }
        assert!(posts.len() < 100, "merged: {} posts", posts.len());
        assert!(start.elapsed() < Duration::from_secs(120));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_robot_is_left_alone_for_the_pause() {
        let robot = Arc::new(Recorder {
            posts: Mutex::new(Vec::new()),
            throttle_first: AtomicUsize::new(1),
        });
        // Throttled: the notice fails as retryable at once, naming the pause.
        let robots = Robots::default();
        let first = robots
            .deliver("test:throttle", LIMITS, robot.clone(), notice(1))
            .await;
        match first {
            Err(NotifyError::Retryable { message: msg, .. }) => {
                assert_eq!(msg, "130101 send too fast; the robot is paused for 10m")
            }
            other => panic!("{other:?}"),
        }
        // During the pause nothing is posted, and nobody waits for the pause to end.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let before = Instant::now();
        let second = robots
            .deliver("test:throttle", LIMITS, robot.clone(), notice(2))
            .await;
        assert!(before.elapsed() < Duration::from_secs(1));
        match second {
            Err(NotifyError::Retryable { message: msg, .. }) => assert_eq!(
                msg,
                "not sent: the robot is paused for another 9m (130101 send too fast)"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(robot.posts.lock().unwrap().len(), 1);
        // After the pause, posts go out again.
        tokio::time::sleep(Duration::from_secs(541)).await;
        let third = robots
            .deliver("test:throttle", LIMITS, robot.clone(), notice(3))
            .await;
        assert_eq!(third.unwrap(), "sent");
        assert_eq!(robot.posts.lock().unwrap().len(), 2);
    }

    #[test]
    fn notices_merge_up_to_the_size_cap_and_keep_their_mentions() {
        let mut replies = Vec::new();
        let batch: Vec<Waiting> = (0..30)
            .map(|i| {
                let (reply, rx) = oneshot::channel();
                replies.push(rx);
                Waiting {
                    notice: notice(i),
                    replies: vec![reply],
                }
            })
            .collect();
        let groups = merge(batch, LIMITS.max_text);
        assert!(groups.len() > 1);
        assert_eq!(groups.iter().map(|w| w.replies.len()).sum::<usize>(), 30);
        for w in &groups {
            assert!(
                w.notice.text.len() <= LIMITS.max_text,
                "{}",
                w.notice.text.len()
            );
            assert!(!w.notice.text.contains("shortened"), "{}", w.notice.text);
        }
        let first = &groups[0].notice;
        assert!(first.text.starts_with("**"), "{}", first.text);
        assert_eq!(first.mentions, vec!["13800000000", "13800000001"]);
    }

    #[test]
    fn long_text_is_shortened_with_a_note_at_a_character_boundary() {
        let text = "销售".repeat(5000); // 30,000 bytes
        let s = shorten(&text, 20_000);
        assert!(s.len() <= 20_000, "{}", s.len());
        assert!(
            s.ends_with("… (shortened: the full message was 30000 bytes, over this robot's limit)")
        );
        assert_eq!(shorten("short", 10), "short");
    }
}

//! Page sessions and logins in progress, in the server's memory: a session is found by the
//! SHA-256 of a random `__Host-` cookie value and holds who signed in (a citizen's id for the
//! portal, an auditor's id for the console), a CSRF token and
//! its times; a login in progress holds the PKCE verifier, the nonce, the page to return to
//! and the value of the browser's login cookie, under its `state`. Nothing here reaches
//! disk; a restart signs everyone out (the next page returns them through the login to the
//! page they were on).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use vault_core::CitizenId;

/// The session cookie.
pub const SESSION_COOKIE: &str = "__Host-vault-session";
/// The login-in-progress cookie (binds a callback to the browser that started the login).
pub const LOGIN_COOKIE: &str = "__Host-vault-login";
/// Idle time after which a session ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// Longest session.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// Longest login in progress.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Most sessions (and logins in progress) held at once.
const MAX_ENTRIES: usize = 200_000;

/// A random URL-safe token of `n` bytes.
pub fn random_token(n: usize) -> Option<String> {
    let mut b = vec![0u8; n];
    vault_core::crypto::random_bytes(&mut b).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn key(cookie: &str) -> [u8; 32] {
    vault_core::crypto::sha256(cookie.as_bytes())
}

/// A signed-in citizen (or auditor: `P` is who signed in).
#[derive(Debug, Clone)]
pub struct Session<P = CitizenId> {
    /// Who signed in.
    pub who: P,
    /// The CSRF token every form carries.
    pub csrf: String,
    /// For a session opened with a client certificate: its `x5t#S256`; every request of
    /// the session must come over a connection with that certificate.
    pub cert: Option<String>,
    created: Instant,
    last: Instant,
}

/// A login the browser started.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    /// PKCE code verifier.
    pub verifier: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The portal page to return to.
    pub next: String,
    /// The redirect URI sent (the token request repeats it).
    pub redirect_uri: String,
    /// The browser's login cookie value.
    pub browser: String,
    created: Instant,
}

/// Sessions and logins in progress.
#[derive(Debug)]
pub struct Sessions<P = CitizenId> {
    sessions: Mutex<HashMap<[u8; 32], Session<P>>>,
    pending: Mutex<HashMap<String, PendingLogin>>,
}

impl<P> Default for Sessions<P> {
    fn default() -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl<P: Clone> Sessions<P> {
    /// Starts a session for `who`; the cookie value, or `None` when full.
    pub fn start(&self, who: P) -> Option<String> {
        self.start_bound(who, None)
    }

    /// Starts a session for `who`, bound to a client certificate's thumbprint if `cert`.
    pub fn start_bound(&self, who: P, cert: Option<String>) -> Option<String> {
        let cookie = random_token(32)?;
        let now = Instant::now();
        let mut m = self.sessions.lock().ok()?;
        if m.len() >= MAX_ENTRIES {
            m.retain(|_, s| live(s, now));
            if m.len() >= MAX_ENTRIES {
                return None;
            }
        }
        m.insert(
            key(&cookie),
            Session {
                who,
                csrf: random_token(24)?,
                cert,
                created: now,
                last: now,
            },
        );
        Some(cookie)
    }

    /// The live session of a cookie value (touching it), if any.
    pub fn get(&self, cookie: &str) -> Option<Session<P>> {
        let now = Instant::now();
        let mut m = self.sessions.lock().ok()?;
        let k = key(cookie);
        let s = m.get_mut(&k)?;
        if !live(s, now) {
            m.remove(&k);
            return None;
        }
        s.last = now;
        Some(s.clone())
    }

    /// Ends a session.
    pub fn end(&self, cookie: &str) {
        if let Ok(mut m) = self.sessions.lock() {
            m.remove(&key(cookie));
        }
    }

    /// Remembers a login in progress under its `state`.
    pub fn begin_login(&self, state: String, login: PendingLogin) -> bool {
        let now = Instant::now();
        let Ok(mut m) = self.pending.lock() else {
            return false;
        };
        if m.len() >= MAX_ENTRIES {
            m.retain(|_, p| now.duration_since(p.created) < LOGIN_WINDOW);
            if m.len() >= MAX_ENTRIES {
                return false;
            }
        }
        m.insert(state, login);
        true
    }

    /// Takes the login in progress of `state` (once), if it is recent enough.
    pub fn take_login(&self, state: &str) -> Option<PendingLogin> {
        let p = self.pending.lock().ok()?.remove(state)?;
        (p.created.elapsed() < LOGIN_WINDOW).then_some(p)
    }
}

impl PendingLogin {
    /// A login started now.
    pub fn new(
        verifier: String,
        nonce: String,
        next: String,
        redirect_uri: String,
        browser: String,
    ) -> Self {
        Self {
            verifier,
            nonce,
            next,
            redirect_uri,
            browser,
            created: Instant::now(),
        }
    }
}

fn live<P>(s: &Session<P>, now: Instant) -> bool {
    now.duration_since(s.last) < IDLE && now.duration_since(s.created) < ABSOLUTE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_cookie_and_end_on_logout() {
        let s: Sessions = Sessions::default();
        let c = s.start(CitizenId::parse("079090001111").unwrap()).unwrap();
        assert_eq!(c.len(), 43);
        let got = s.get(&c).unwrap();
        assert_eq!(got.who.expose(), "079090001111");
        assert!(s.get("forged").is_none());
        s.end(&c);
        assert!(s.get(&c).is_none());
    }

    #[test]
    fn a_login_in_progress_is_taken_once() {
        let s: Sessions = Sessions::default();
        let p = PendingLogin::new(
            "v".into(),
            "n".into(),
            "/portal".into(),
            "r".into(),
            "b".into(),
        );
        assert!(s.begin_login("st".into(), p));
        assert_eq!(s.take_login("st").unwrap().nonce, "n");
        assert!(s.take_login("st").is_none());
    }
}

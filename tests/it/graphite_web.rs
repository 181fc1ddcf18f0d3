//! A real graphite-web 1.1.8 (Debian `graphite-web`, under gunicorn) on a loopback port, in a temp
//! dir, as the reference for compatibility tests. Killed when the guard drops.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GraphiteWeb {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl GraphiteWeb {
    pub fn start() -> GraphiteWeb {
        assert!(
            Path::new("/usr/lib/python3/dist-packages/graphite").exists(),
            "graphite-web is not installed: run scripts/setup.sh test (./x test does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["web", "storage/whisper", "log"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let settings = format!(
            "SECRET_KEY = 'tally-compat-test'\nALLOWED_HOSTS = ['*']\nTIME_ZONE = 'UTC'\nLOG_ROTATION = False\n\
             DEFAULT_XFILES_FACTOR = 0\nSTORAGE_DIR = '{d}/storage/'\nWHISPER_DIR = '{d}/storage/whisper/'\n\
             LOG_DIR = '{d}/log/'\nINDEX_FILE = '{d}/storage/index'\nSTATIC_ROOT = '/usr/share/graphite-web/static'\n\
             CARBONLINK_HOSTS = []\nTAGDB = 'graphite.tags.localdatabase.LocalDatabaseTagDB'\n\
             DATABASES = {{'default': {{'NAME': '{d}/storage/graphite.db', 'ENGINE': 'django.db.backends.sqlite3', \
             'OPTIONS': {{'timeout': 30}}}}}}\n",
            d = d.display()
        );
        std::fs::write(d.join("web/tally_compat_settings.py"), settings).expect("settings");
        let env = |c: &mut Command| {
            c.env("PYTHONPATH", d.join("web"))
                .env("DJANGO_SETTINGS_MODULE", "graphite.settings")
                .env("GRAPHITE_SETTINGS_MODULE", "tally_compat_settings")
                .env("TZ", "UTC");
        };
        let mut migrate = Command::new("/usr/bin/python3");
        migrate
            .args(["-m", "django", "migrate", "--noinput"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        env(&mut migrate);
        assert!(
            migrate.status().expect("django migrate runs").success(),
            "graphite-web migrate failed"
        );
        let port = free_port();
        let mut gunicorn = Command::new("/usr/bin/python3");
        gunicorn
            .args([
                "/usr/bin/gunicorn",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--workers",
                "2",
                "--timeout",
                "120",
            ])
            .arg("graphite.wsgi:application")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        env(&mut gunicorn);
        let child = gunicorn.spawn().expect("gunicorn starts");
        let gw = GraphiteWeb {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reqwest::blocking::get(gw.url("/version")).is_ok_and(|r| r.status().is_success()) {
            assert!(
                Instant::now() < deadline,
                "graphite-web did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        gw
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for GraphiteWeb {
    fn drop(&mut self) {
        // TERM lets gunicorn stop its workers; KILL if it does not within 10 s.
        #[allow(unsafe_code)]
        // SAFETY: signalling our own child process by pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

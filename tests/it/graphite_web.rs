//! A real graphite-web 1.1.8 (Debian `graphite-web`, under gunicorn) on a loopback port, in a temp
//! dir, as the reference for compatibility tests. Killed when the guard drops.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GraphiteWeb {
    child: Child,
    /// carbon-cache feeding this graphite-web, when started with one.
    carbon: Option<Child>,
    pub port: u16,
    /// carbon's plaintext port, when started with carbon.
    pub line_port: u16,
    _dir: tempfile::TempDir,
}

use crate::proc::free_port;

impl GraphiteWeb {
    /// graphite-web alone: enough for storage-free targets.
    pub fn start() -> GraphiteWeb {
        Self::start_inner(false)
    }

    /// graphite-web fed by a carbon-cache (10s:1d for everything, tags on, carbonlink on).
    pub fn start_with_carbon() -> GraphiteWeb {
        assert!(
            Path::new("/usr/bin/carbon-cache").exists(),
            "graphite-carbon is not installed: run scripts/setup.sh test (./x test does)"
        );
        Self::start_inner(true)
    }

    /// graphite-web with no data of its own that federates `servers` (host:port) with
    /// `CLUSTER_SERVERS`, as a large Graphite site runs its front ends.
    pub fn start_cluster(servers: &[String]) -> GraphiteWeb {
        let list: Vec<String> = servers.iter().map(|s| format!("'{s}'")).collect();
        Self::start_with(
            false,
            &format!(
                "CLUSTER_SERVERS = [{}]\nREMOTE_EXCLUDE_LOCAL = False\nFIND_CACHE_DURATION = 0\n",
                list.join(", ")
            ),
        )
    }

    fn start_inner(with_carbon: bool) -> GraphiteWeb {
        Self::start_with(with_carbon, "")
    }

    fn start_with(with_carbon: bool, extra_settings: &str) -> GraphiteWeb {
        assert!(
            Path::new("/usr/lib/python3/dist-packages/graphite").exists(),
            "graphite-web is not installed: run scripts/setup.sh test (./x test does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["web", "storage/whisper", "log"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let port = free_port();
        let (line_port, link_port) = (free_port(), free_port());
        let carbonlink = if with_carbon {
            format!("['127.0.0.1:{link_port}']")
        } else {
            "[]".into()
        };
        let settings = format!(
            "SECRET_KEY = 'tally-compat-test'\nALLOWED_HOSTS = ['*']\nTIME_ZONE = 'UTC'\nLOG_ROTATION = False\n\
             DEFAULT_XFILES_FACTOR = 0\nSTORAGE_DIR = '{d}/storage/'\nWHISPER_DIR = '{d}/storage/whisper/'\n\
             LOG_DIR = '{d}/log/'\nINDEX_FILE = '{d}/storage/index'\nSTATIC_ROOT = '/usr/share/graphite-web/static'\n\
             CARBONLINK_HOSTS = {carbonlink}\nTAGDB = 'graphite.tags.localdatabase.LocalDatabaseTagDB'\n\
             DATABASES = {{'default': {{'NAME': '{d}/storage/graphite.db', 'ENGINE': 'django.db.backends.sqlite3', \
             'OPTIONS': {{'timeout': 30}}}}}}\n",
            d = d.display()
        ) + extra_settings;
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
        let carbon = with_carbon.then(|| start_carbon(d, port, line_port, link_port));
        let gw = GraphiteWeb {
            child,
            carbon,
            port,
            line_port,
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

    /// Sends plaintext to carbon over one connection.
    pub fn send(&self, text: &str) {
        use std::io::Write;
        let mut c =
            std::net::TcpStream::connect(("127.0.0.1", self.line_port)).expect("carbon accepts");
        c.write_all(text.as_bytes()).expect("write to carbon");
    }

    /// carbon's and graphite-web's logs, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for f in [
            "log/carbon/stdout.log",
            "log/carbon/stderr.log",
            "log/carbon/console.log",
            "log/info.log",
            "log/exception.log",
        ] {
            if let Ok(t) = std::fs::read_to_string(self._dir.path().join(f)) {
                let tail: Vec<&str> = t.lines().rev().take(15).collect();
                out.push_str(&format!(
                    "== {f}\n{}\n",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        out
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn start_carbon(d: &Path, http_port: u16, line_port: u16, link_port: u16) -> Child {
    for sub in ["conf", "storage/lists", "log/carbon"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    let conf = format!(
        "[cache]\nSTORAGE_DIR = {d}/storage/\nLOCAL_DATA_DIR = {d}/storage/whisper/\nWHITELISTS_DIR = {d}/storage/lists/\n\
         CONF_DIR = {d}/conf/\nLOG_DIR = {d}/log/carbon/\nPID_DIR = {d}/\nENABLE_LOGROTATION = False\nUSER =\n\
         DATABASE = whisper\nMAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = inf\nMAX_CREATES_PER_MINUTE = inf\n\
         LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line_port}\nENABLE_UDP_LISTENER = False\n\
         PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = 0\nCACHE_QUERY_INTERFACE = 127.0.0.1\n\
         CACHE_QUERY_PORT = {link_port}\nLOG_UPDATES = False\nLOG_CREATES = False\nCACHE_WRITE_STRATEGY = sorted\n\
         WHISPER_AUTOFLUSH = False\nENABLE_TAGS = True\nGRAPHITE_URL = http://127.0.0.1:{http_port}\n\
         TAG_UPDATE_INTERVAL = 100\nTAG_BATCH_SIZE = 100\nCARBON_METRIC_INTERVAL = 0\n",
        d = d.display()
    );
    std::fs::write(d.join("conf/carbon.conf"), conf).expect("carbon.conf");
    std::fs::write(
        d.join("conf/storage-schemas.conf"),
        "[everything]\npattern = .*\nretentions = 10s:1d\n",
    )
    .expect("schemas");
    std::fs::write(
        d.join("conf/storage-aggregation.conf"),
        "[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n",
    )
    .expect("aggregation");
    let child = Command::new("/usr/bin/python3")
        .arg("/usr/bin/carbon-cache")
        .arg(format!("--config={}/conf/carbon.conf", d.display()))
        .arg(format!("--pidfile={}/carbon.pid", d.display()))
        .args(["--nodaemon"])
        .arg(format!("--logdir={}/log/carbon", d.display()))
        .arg("start")
        .env("TZ", "UTC")
        .stdout(
            std::fs::File::create(d.join("log/carbon/stdout.log"))
                .map_or(Stdio::null(), Stdio::from),
        )
        .stderr(
            std::fs::File::create(d.join("log/carbon/stderr.log"))
                .map_or(Stdio::null(), Stdio::from),
        )
        .spawn()
        .expect("carbon-cache starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", line_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "carbon-cache did not come up on port {line_port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child
}

fn stop(child: &mut Child) {
    #[allow(unsafe_code)]
    // SAFETY: signalling our own child process by pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for GraphiteWeb {
    fn drop(&mut self) {
        if let Some(c) = self.carbon.as_mut() {
            stop(c);
        }
        stop(&mut self.child);
    }
}

//! A cluster on real parts: three `sync-server` nodes on 127.0.0.2, .3 and .4 over one
//! PostgreSQL database and one S3 bucket, optionally behind HAProxy started with the shipped
//! `deploy/haproxy.cfg`. The cluster scenarios (`cluster.rs`) and the crash campaign
//! (`crash_campaign.rs`) run on it.

use std::time::Duration;

use cairn_test_support::haproxy::{free_port, haproxy_binary};
use cairn_test_support::{Haproxy, ServerEnvironment, ServerProcess, Services, admin_field};
use serde_json::Value;

use super::server::{TEAM, USER};

/// How the nodes run behind HAProxy, as docs-src's cluster page says: HAProxy limits
/// connections per client, since to the nodes every connection comes from HAProxy.
pub const NODE_ARGS: &[&str] = &["--max-connections-per-address", "0"];

/// The three nodes' loopback addresses: one host each, as on three machines.
pub const NODE_IPS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

/// Three nodes (some may be stopped) over one database and bucket, optionally behind HAProxy.
pub struct Cluster {
    // Fields drop in order: HAProxy and the nodes go before the database and bucket.
    pub haproxy: Option<Haproxy>,
    pub nodes: [Option<ServerProcess>; 3],
    pub addresses: [String; 3],
    /// alice's token.
    pub token: String,
    pub http: reqwest::blocking::Client,
    /// Every node's arguments after `serve --listen <address>`: [`NODE_ARGS`] and the extra
    /// ones it was started with.
    node_args: Vec<String>,
    pub env: ServerEnvironment,
}

impl Cluster {
    /// Starts the nodes (and HAProxy with `balanced`) on the services of the `CAIRN_TEST_*`
    /// variables; `None` (skipped) without the services, or without HAProxy when it is wanted.
    pub fn start(balanced: bool) -> Option<Cluster> {
        let services = Services::from_env()?;
        Cluster::start_on(&services, balanced, &[])
    }

    /// Like [`Cluster::start`], on `services` (say, S3 through a `FaultyS3`), every node
    /// started with `extra` arguments after [`NODE_ARGS`].
    pub fn start_on(services: &Services, balanced: bool, extra: &[&str]) -> Option<Cluster> {
        let haproxy_binary = if balanced {
            Some(haproxy_binary()?)
        } else {
            None
        };
        let env = ServerEnvironment::production(services);
        env.create_user(USER);
        env.create_team(TEAM, USER);
        let token = admin_field(&env.admin(&["create-token", "--user", USER]), "token");
        let addresses = NODE_IPS.map(|ip| format!("{ip}:{}", free_port(ip)));
        let node_args: Vec<String> = NODE_ARGS
            .iter()
            .chain(extra)
            .map(|arg| (*arg).to_owned())
            .collect();
        let mut cluster = Cluster {
            haproxy: None,
            nodes: [None, None, None],
            addresses,
            token,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            node_args,
            env,
        };
        for index in 0..3 {
            cluster.restart(index);
        }
        cluster.haproxy = haproxy_binary.map(|binary| {
            let log = cluster.env.dir().join("haproxy.log");
            let haproxy = Haproxy::start(&binary, &cluster.addresses, &log);
            haproxy.wait_for_states(&["UP", "UP", "UP"], Duration::from_secs(20));
            haproxy
        });
        Some(cluster)
    }

    pub fn haproxy(&self) -> &Haproxy {
        self.haproxy.as_ref().expect("a balanced cluster")
    }

    pub fn node_url(&self, index: usize) -> String {
        format!("http://{}", self.addresses[index])
    }

    pub fn node(&mut self, index: usize) -> &mut ServerProcess {
        self.nodes[index].as_mut().expect("a running node")
    }

    /// Starts node `index` (again) at its address; returns once it is ready.
    pub fn restart(&mut self, index: usize) {
        assert!(self.nodes[index].is_none(), "node {index} is running");
        let args: Vec<&str> = self.node_args.iter().map(String::as_str).collect();
        self.nodes[index] = Some(self.env.serve_at(&self.addresses[index], &args));
    }

    /// Kills node `index` with SIGKILL and waits for it.
    pub fn kill(&mut self, index: usize) {
        self.node(index).kill();
        self.nodes[index] = None;
    }

    /// Drains node `index` with SIGTERM and waits for it to exit 0.
    pub fn drain(&mut self, index: usize) {
        let node = self.node(index);
        node.terminate();
        let status = node
            .wait_for_exit(Duration::from_secs(40))
            .expect("a drained node exits");
        assert!(status.success(), "node {index} exited with {status}");
        self.nodes[index] = None;
    }

    /// Creates a project in alice's team with `admin`; its id.
    pub fn create_project(&self, name: &str) -> String {
        let output = self
            .env
            .admin(&["create-project", "--team", TEAM, "--name", name]);
        admin_field(&output, "project")
    }

    /// `GET {base}{path}` as alice: the JSON answer, which must be 200.
    pub fn get(&self, base: &str, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(&self.token)
            .send()
            .unwrap_or_else(|error| panic!("GET {base}{path}: {error}"));
        assert_eq!(response.status(), 200, "GET {base}{path}");
        response.json().expect("a JSON answer")
    }

    /// `sync-server admin nodes --json`: one object per registered node.
    pub fn registry(&self) -> Vec<Value> {
        self.env
            .admin(&["nodes", "--json"])
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }
}

/// A head as the API reads it: (version, root).
pub fn head(project: &Value) -> (u64, String) {
    (
        project["version"].as_u64().expect("a version"),
        project["root"].as_str().expect("a root").to_owned(),
    )
}

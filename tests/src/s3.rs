//! A real S3-compatible server (`s3s-fs`) per test, with a bucket of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use s3::creds::Credentials;
use s3::{Bucket, BucketConfiguration, Region};

use crate::net::{free_port, wait_for_port};
use crate::process::{die_with_parent, find_executable, temp_dir};

pub const ACCESS_KEY: &str = "test-access-key";
pub const SECRET_KEY: &str = "test-secret-key";
pub const REGION: &str = "us-east-1";

/// A running `s3s-fs` with one bucket, stopped and removed on drop.
#[derive(Debug)]
pub struct TestS3 {
    child: Child,
    root: PathBuf,
    addr: SocketAddr,
    bucket: String,
}

impl TestS3 {
    /// Starts a server on a free port and creates the bucket `bucket`.
    pub fn start(bucket: &str) -> TestS3 {
        let exe = find_executable("s3s-fs").expect(
            "s3s-fs not found: install it with \
             `cargo install s3s-fs --version 0.14.1 --features binary --locked` (tests/run does)",
        );
        let root = temp_dir("telegram-bots-s3");
        for attempt in 0.. {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut child = spawn(&exe, addr, &root);
            if wait_for_port(addr, Duration::from_secs(20)) {
                let s3 = TestS3 {
                    child,
                    root,
                    addr,
                    bucket: bucket.to_owned(),
                };
                Bucket::create_with_path_style(
                    bucket,
                    s3.region(),
                    s3.credentials(),
                    BucketConfiguration::default(),
                )
                .unwrap_or_else(|e| panic!("create bucket {bucket}: {e}"));
                return s3;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(attempt < 3, "s3s-fs did not start listening on {addr}");
        }
        unreachable!()
    }

    /// Stops the server (the objects stay): S3 is unavailable until [`TestS3::resume`].
    pub fn pause(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same address and objects.
    pub fn resume(&mut self) {
        let exe = find_executable("s3s-fs").expect("s3s-fs ran before");
        self.child = spawn(&exe, self.addr, &self.root);
        assert!(
            wait_for_port(self.addr, Duration::from_secs(20)),
            "s3s-fs did not start listening again on {}",
            self.addr
        );
    }

    /// `http://127.0.0.1:PORT`, for `S3_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn bucket_name(&self) -> &str {
        &self.bucket
    }

    pub fn region(&self) -> Region {
        Region::Custom {
            region: REGION.to_owned(),
            endpoint: self.endpoint(),
        }
    }

    pub fn credentials(&self) -> Credentials {
        Credentials::new(Some(ACCESS_KEY), Some(SECRET_KEY), None, None, None)
            .expect("static credentials")
    }

    /// A client for the test's bucket (path-style, as s3s-fs wants).
    pub fn bucket(&self) -> Box<Bucket> {
        Bucket::new(&self.bucket, self.region(), self.credentials())
            .expect("bucket handle")
            .with_path_style()
    }

    /// The environment a service needs to use this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("S3_ENDPOINT".into(), self.endpoint()),
            ("S3_BUCKET".into(), self.bucket.clone()),
            ("S3_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        ]
    }
}

fn spawn(exe: &std::path::Path, addr: SocketAddr, root: &std::path::Path) -> Child {
    let mut command = Command::new(exe);
    command
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut command, libc::SIGKILL);
    command.spawn().expect("start s3s-fs")
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

//! The identity of a `kflow` process, written beside what it records and
//! creates, so that another process can tell whether it is still alive
//! without being fooled by PID namespaces (a kflow in a container sees other
//! PIDs than one on the host) or by PID reuse.
//!
//! An owner is `BOOT/PIDNS/PID/START`: the kernel's boot id, the PID
//! namespace's inode, the PID and the process's start time in clock ticks
//! since boot. It is proven dead when it ran in an earlier boot of this
//! kernel (a history lives on one machine: SQLite's WAL needs shared memory),
//! or when the PID namespace is this process's own and no process with that
//! PID and start time runs. Another PID namespace (a kflow in a container, or
//! the host seen from one) is [`Liveness::Unknown`], treated as alive.

use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub boot: String,
    pub pidns: String,
    pub pid: i32,
    pub start: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// Another machine, boot or PID namespace: nothing can be proven.
    Unknown,
}

impl Owner {
    /// This process.
    pub fn current() -> &'static Owner {
        static CURRENT: OnceLock<Owner> = OnceLock::new();
        CURRENT.get_or_init(|| {
            let pid = std::process::id() as i32;
            Owner {
                boot: boot_id(),
                pidns: pid_namespace(),
                pid,
                start: start_time(pid).unwrap_or(0),
            }
        })
    }

    pub fn to_label(&self) -> String {
        format!("{}/{}/{}/{}", self.boot, self.pidns, self.pid, self.start)
    }

    pub fn parse(label: &str) -> Option<Owner> {
        let mut parts = label.split('/');
        let owner = Owner {
            boot: parts.next()?.to_string(),
            pidns: parts.next()?.to_string(),
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(owner)
    }

    pub fn liveness(&self) -> Liveness {
        let me = Owner::current();
        if self.boot.is_empty() || self.pidns.is_empty() || me.boot.is_empty() {
            return Liveness::Unknown;
        }
        if self.boot != me.boot {
            return Liveness::Dead;
        }
        if self.pidns != me.pidns {
            return Liveness::Unknown;
        }
        match stat(self.pid) {
            None => Liveness::Dead,
            Some((state, start)) if state == 'Z' || start != self.start => Liveness::Dead,
            Some(_) => Liveness::Alive,
        }
    }
}

/// The operating-system user running this command (`uid N` without a name).
pub fn os_user() -> String {
    // SAFETY: getuid cannot fail; getpwuid_r writes only into the buffers
    // given, and the name is read only when it reports success.
    unsafe {
        let uid = libc::getuid();
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out);
        if rc == 0 && !out.is_null() && !pw.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned();
        }
        format!("uid {uid}")
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `pid:[4026531836]` → `4026531836`.
fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|p| {
            let s = p.to_string_lossy().into_owned();
            s.strip_prefix("pid:[")?.strip_suffix(']').map(str::to_string)
        })
        .unwrap_or_default()
}

fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// The state letter and start time of a process, from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 is the state, field 22 the start time.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_round_trips() {
        let me = Owner::current();
        assert!(!me.boot.is_empty() && !me.pidns.is_empty() && me.start > 0);
        assert_eq!(Owner::parse(&me.to_label()).as_ref(), Some(me));
        assert_eq!(me.liveness(), Liveness::Alive);
    }

    #[test]
    fn dead_only_when_provably_so() {
        let me = Owner::current();
        let reused = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert_eq!(reused.liveness(), Liveness::Dead, "a PID reused by another process");
        let gone = Owner {
            pid: 4_194_305,
            ..me.clone()
        };
        assert_eq!(gone.liveness(), Liveness::Dead);
        let elsewhere = Owner {
            pidns: "1".into(),
            ..gone.clone()
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown, "another PID namespace");
        let rebooted = Owner {
            boot: "other".into(),
            ..me.clone()
        };
        assert_eq!(rebooted.liveness(), Liveness::Dead, "an earlier boot");
        assert_eq!(Owner::parse("1/2/x/4"), None);
        assert_eq!(Owner::parse("1/2/3/4/5"), None);
    }
}

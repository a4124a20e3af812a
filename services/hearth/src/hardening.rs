//! Process hardening at start: no core dumps.
//!
//! A core dump of an unlocked server would hold the data keys and every
//! projected sample in the clear. Both switches are set before any secret
//! is read: the soft and hard `RLIMIT_CORE` to zero (the process cannot
//! raise it again), and `PR_SET_DUMPABLE` to 0, which also keeps other
//! processes of the same user from attaching with ptrace or reading
//! `/proc/<pid>/mem`.

/// Turns core dumps off for this process. Fails only if the kernel refuses.
pub fn disable_core_dumps() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{
            set_dumpable_behavior, setrlimit, DumpableBehavior, Resource, Rlimit,
        };
        setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )?;
        set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    }
    Ok(())
}

/// Whether core dumps are off: the dumpable flag cleared and a zero core limit.
pub fn core_dumps_disabled() -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{dumpable_behavior, getrlimit, DumpableBehavior, Resource};
        let limit = getrlimit(Resource::Core);
        matches!(dumpable_behavior(), Ok(DumpableBehavior::NotDumpable))
            && limit.current == Some(0)
            && limit.maximum == Some(0)
    }
    #[cfg(not(target_os = "linux"))]
    false
}

//! Allocator tuning for glibc builds; nothing to do with musl (the shipped
//! image), whose allocator already behaves this way.

/// Makes glibc's malloc give every block of 128 KiB or more back to the
/// kernel when it is freed. By default the threshold grows to the largest
/// block freed so far, so one big answer (a list of a thousand Deployments)
/// would stay resident for good. Call before other threads exist.
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator; it is
    // called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Gives the free pages inside glibc's heap back to the kernel, after a
/// run that allocated and freed a lot (a sync of many workloads).
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes the allocator has handed out and not yet got back (glibc only):
/// what the manager's data really takes, without the free space a
/// fragmented heap still holds.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn heap_in_use_follows_allocations() {
        let before = super::heap_in_use().unwrap();
        let block = vec![1u8; 4 << 20];
        let during = super::heap_in_use().unwrap();
        assert!(during >= before + (2 << 20), "{before} -> {during}");
        drop(std::hint::black_box(block));
    }
}

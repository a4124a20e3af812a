//! A global allocator that zeroes every heap block before handing it back
//! to the allocator it wraps: whatever a request body, a decoded record or
//! a query answer held is gone from memory the moment its buffer is freed,
//! not whenever the allocator happens to reuse the block.
//!
//! Hearth's binaries install it around mimalloc. Together with the wipe at
//! lock (the projection's columns, indexes and strings), nothing of the
//! owner's data stays readable in the process once the store is locked.
//! This is the workspace's one crate with `unsafe` code; it is kept apart
//! so that every other crate can forbid it.
//!
//! Blocks of [`MAPPED_FROM`] bytes and more (the columns of a type with
//! millions of samples) are mapped from the system directly, so growing
//! one moves its pages (`mremap`) instead of copying them into a block the
//! system must hand out afresh: a column that doubles as a replay appends
//! to it costs no copy and no more memory than it holds. Shrinking one
//! wipes and unmaps the pages cut off, in place.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_int, c_long};

// Linked for the symbol declared below.
use libmimalloc_sys as _;

extern "C" {
    /// mimalloc's option setter (`mimalloc.h`).
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay`: how long mimalloc keeps freed memory before
/// giving it back to the system, in milliseconds (its place in mimalloc's
/// `mi_option_t`, the same in mimalloc 2 and 3).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// How long freed memory stays with mimalloc here: long enough that a busy
/// import reuses it instead of asking the system again (at 0, imports ran
/// about 15% slower), short enough that it goes back soon after.
pub const PURGE_DELAY_MS: c_long = 100;

/// Has mimalloc give freed memory back to the system after
/// [`PURGE_DELAY_MS`] instead of its default (a second, in mimalloc 3): the
/// memory a large import or a snapshot used goes back to the machine soon
/// after they are done. Call it first thing in `main`, before any other
/// thread exists (mimalloc's option setters are not thread-safe).
pub fn return_freed_memory_promptly() {
    // SAFETY: `mi_option_set` stores a value for a valid option number
    // (the purge delay); no other thread runs yet to read options at the
    // same time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}

/// Has the system back this process's memory with ordinary pages only,
/// never transparent huge pages (2 MiB each): mimalloc asks for them on
/// its arenas, and a huge page is resident whole however little of it is
/// used, and stays so when mimalloc gives part of it back. An import's
/// peak held about 60 MB more with them, and ran no faster. Call it first
/// thing in `main`: it covers mappings made before it too, but not huge
/// pages already in them.
pub fn use_small_pages() -> std::io::Result<()> {
    // SAFETY: `PR_SET_THP_DISABLE` sets a flag of this process; it reads
    // and writes no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Wraps `A`, zeroing each block before `A` frees it. Growing or shrinking
/// a block moves it here (new block, copy, wipe and free the old one),
/// since `A`'s own `realloc` may free the old block unwiped. Blocks of
/// [`MAPPED_FROM`] bytes or more bypass `A` (see the crate's doc).
pub struct ZeroOnFree<A>(pub A);

/// The size from which a block is mapped from the system rather than taken
/// from the wrapped allocator. Whether a block is mapped follows from its
/// layout alone, which `dealloc` and `realloc` are given unchanged.
pub const MAPPED_FROM: usize = 16 << 20;

/// The strictest alignment a mapping is sure to meet (the smallest page
/// size of the systems Hearth runs on).
const MAPPED_ALIGN: usize = 4096;

fn is_mapped(size: usize, align: usize) -> bool {
    size >= MAPPED_FROM && align <= MAPPED_ALIGN
}

/// A fresh mapping of `size` bytes (zero-filled, no page touched yet), or
/// null.
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}

/// The system's page size (what `mincore` reports on).
fn page_size() -> usize {
    // SAFETY: `sysconf` only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .unwrap_or(MAPPED_ALIGN)
        .max(MAPPED_ALIGN)
}

/// Zeroes the pages of `ptr..ptr + len` that are in memory: a page never
/// touched holds nothing, and writing it would only bring it in.
///
/// # Safety
/// `ptr` must be page-aligned and valid for writes of `len` bytes.
unsafe fn wipe_resident(ptr: *mut u8, len: usize) {
    const PAGES_PER_CALL: usize = 4096;
    let page_size = page_size();
    let mut resident = [0u8; PAGES_PER_CALL];
    let mut done = 0;
    while done < len {
        let piece = (len - done).min(PAGES_PER_CALL * page_size);
        let at = ptr.wrapping_add(done);
        // SAFETY: `at` is page-aligned and `at..at + piece` lies in the
        // caller's block; `resident` has a byte for each of its pages.
        let known = unsafe { libc::mincore(at.cast(), piece, resident.as_mut_ptr()) } == 0;
        for (page, &flags) in resident.iter().enumerate() {
            let offset = page * page_size;
            if offset >= piece {
                break;
            }
            if !known || flags & 1 != 0 {
                // SAFETY: within `at..at + piece`.
                unsafe { wipe(at.add(offset), page_size.min(piece - offset)) };
            }
        }
        done += piece;
    }
}

/// Wipes and unmaps a mapped block.
///
/// # Safety
/// `ptr` must be a live mapped block of `size` bytes.
unsafe fn unmap(ptr: *mut u8, size: usize) {
    // SAFETY: the caller's block is page-aligned (a mapping) and writable.
    unsafe { wipe_resident(ptr, size) };
    // SAFETY: the block is the caller's and is not used again. Failure
    // (only for invalid arguments) would leave the pages mapped, wiped.
    unsafe { libc::munmap(ptr.cast(), size) };
}

/// Resizes a mapped block to `new_size` (also mapped): a larger one by
/// moving its pages rather than copying them, null if the system refuses
/// (the block is then unchanged); a smaller one in place, its cut-off
/// pages wiped, then unmapped.
///
/// # Safety
/// `ptr` must be a live mapped block of `size` bytes.
unsafe fn remap(ptr: *mut u8, size: usize, new_size: usize) -> *mut u8 {
    if new_size <= size {
        let kept_pages_end = new_size.next_multiple_of(page_size()).min(size);
        // SAFETY: both ranges lie within the caller's block, which it
        // gives up beyond `new_size`; the second starts on a page
        // boundary.
        unsafe {
            wipe(ptr.add(new_size), kept_pages_end - new_size);
            wipe_resident(ptr.add(kept_pages_end), size - kept_pages_end);
        }
        if kept_pages_end < size {
            // SAFETY: whole pages at the end of the caller's mapping, not
            // used again. Should the system refuse (it may, only when out
            // of mappings), they stay mapped, wiped: the block is still
            // the first `new_size` bytes, as asked, so the shrink never
            // fails after its cut-off bytes were wiped.
            unsafe { libc::munmap(ptr.add(kept_pages_end).cast(), size - kept_pages_end) };
        }
        return ptr;
    }
    // SAFETY: the caller's block is a whole mapping of `size` bytes; with
    // `MREMAP_MAYMOVE` the kernel may place it elsewhere, and on failure
    // leaves it where and as it was.
    let moved = unsafe { libc::mremap(ptr.cast(), size, new_size, libc::MREMAP_MAYMOVE) };
    if moved == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        moved.cast()
    }
}

/// Zeroes `len` bytes at `ptr`, in a way the compiler cannot drop as a
/// dead store to memory about to be freed.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn wipe(ptr: *mut u8, len: usize) {
    // SAFETY: the caller guarantees `ptr..ptr + len` is writable.
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
    std::hint::black_box(ptr);
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

// SAFETY: every method forwards to `A` with the layout it was given (for
// `realloc`, the layout of the new size, which the caller guarantees is
// valid); a block is only written within its own size, before `A` frees
// it.
unsafe impl<A: GlobalAlloc> GlobalAlloc for ZeroOnFree<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_mapped(layout.size(), layout.align()) {
            return map(layout.size());
        }
        // SAFETY: forwarded unchanged.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_mapped(layout.size(), layout.align()) {
            // A fresh mapping reads as zeros.
            return map(layout.size());
        }
        // SAFETY: forwarded unchanged.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_mapped(layout.size(), layout.align()) {
            // SAFETY: a block of this layout was mapped by `alloc` or
            // `realloc`.
            return unsafe { unmap(ptr, layout.size()) };
        }
        // SAFETY: `ptr` is a live block of `layout.size()` bytes from `A`.
        unsafe {
            wipe(ptr, layout.size());
            self.0.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if is_mapped(layout.size(), layout.align()) && is_mapped(new_size, layout.align()) {
            // SAFETY: a block of this layout was mapped.
            return unsafe { remap(ptr, layout.size(), new_size) };
        }
        // SAFETY: the caller guarantees that `new_size`, rounded up to the
        // alignment, does not overflow `isize`, and that `ptr` is a live
        // block of `layout.size()` bytes; the new block holds `new_size`
        // bytes, so the copy stays within both.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    extern "C" {
        fn mi_option_get(option: c_int) -> c_long;
    }

    /// The option set is mimalloc's purge delay: its default in mimalloc 3
    /// is a second (unless the environment sets it), and ours after.
    /// mimalloc is not this binary's allocator, so no thread reads its
    /// options meanwhile.
    #[test]
    fn freed_memory_goes_back_sooner() {
        // SAFETY: reads a valid option; see above for threads.
        let before = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(before, 1000);
        }
        return_freed_memory_promptly();
        // SAFETY: as above.
        let after = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, PURGE_DELAY_MS);
    }

    /// The kilobytes of huge pages in the mapping that holds `addr`, from
    /// `/proc/self/smaps`.
    fn huge_page_kb_around(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_once(' ').and_then(|(r, _)| r.split_once('-'));
            if let Some((start, end)) = range {
                if let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                ) {
                    inside = (start..end).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(kb) = line.strip_prefix("AnonHugePages:") {
                    return kb.trim().trim_end_matches(" kB").parse().unwrap();
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// mimalloc asks for huge pages on the arena it allocates from; after
    /// the call, 32 MiB of small blocks written there take none. Each test
    /// runs in a process of its own (`cargo nextest`), so the flag set here
    /// is this test's alone.
    #[test]
    fn huge_pages_are_turned_off_for_the_process() {
        use_small_pages().unwrap();
        // SAFETY: reads a flag of this process.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1);
        const BLOCK: usize = 1024;
        let blocks: Vec<*mut u8> = (0..32 * 1024)
            .map(|_| {
                // SAFETY: a fresh block of `BLOCK` bytes, written within
                // its size.
                unsafe {
                    let block = libmimalloc_sys::mi_malloc(BLOCK).cast::<u8>();
                    assert!(!block.is_null());
                    std::ptr::write_bytes(block, 1, BLOCK);
                    block
                }
            })
            .collect();
        let huge = huge_page_kb_around(blocks[blocks.len() / 2] as usize);
        for block in blocks {
            // SAFETY: each block came from `mi_malloc` and is freed once.
            unsafe { libmimalloc_sys::mi_free(block.cast()) };
        }
        assert_eq!(huge, 0, "huge pages back mimalloc's memory");
    }

    #[test]
    fn a_freed_block_is_zero_before_the_inner_allocator_gets_it() {
        /// Records what a block held when it was handed back.
        struct Witness(std::sync::Mutex<Vec<u8>>);
        // SAFETY: forwards to the system allocator; `dealloc` reads the
        // block, which is still live, before freeing it.
        unsafe impl GlobalAlloc for Witness {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                // SAFETY: forwarded unchanged.
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: `ptr` is live for `layout.size()` bytes.
                let held = unsafe { std::slice::from_raw_parts(ptr, layout.size()) }.to_vec();
                *self.0.lock().unwrap() = held;
                // SAFETY: forwarded unchanged.
                unsafe { System.dealloc(ptr, layout) }
            }
        }
        let allocator = ZeroOnFree(Witness(std::sync::Mutex::new(Vec::new())));
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a 64-byte block, written within its size, moved by
        // `realloc` to 200 bytes, then freed with the layout it now has.
        unsafe {
            let block = allocator.alloc(layout);
            assert!(!block.is_null());
            std::ptr::write_bytes(block, 0xA5, 64);
            let grown = allocator.realloc(block, layout, 200);
            assert!(!grown.is_null());
            // The old block went back zeroed; its bytes moved along.
            assert_eq!(*allocator.0 .0.lock().unwrap(), vec![0u8; 64]);
            assert_eq!(std::slice::from_raw_parts(grown, 64), &[0xA5u8; 64][..]);
            allocator.dealloc(grown, Layout::from_size_align(200, 8).unwrap());
        }
        assert_eq!(*allocator.0 .0.lock().unwrap(), vec![0u8; 200]);
    }

    /// Which of the `pages` pages at `ptr` are in memory.
    fn resident(ptr: *mut u8, pages: usize) -> Vec<bool> {
        let mut flags = vec![0u8; pages];
        // SAFETY: `ptr` is a page-aligned mapping of at least `pages` pages.
        let rc = unsafe { libc::mincore(ptr.cast(), pages * MAPPED_ALIGN, flags.as_mut_ptr()) };
        assert_eq!(rc, 0);
        flags.iter().map(|f| f & 1 != 0).collect()
    }

    /// A large block grows and shrinks in place of its pages, across the
    /// threshold both ways, its bytes kept; the wrapped allocator never
    /// sees it while it is large.
    #[test]
    fn a_large_block_moves_its_pages_and_keeps_its_bytes() {
        let allocator = ZeroOnFree(std::alloc::System);
        let small = Layout::from_size_align(1 << 20, 8).unwrap();
        let pattern = |i: usize| (i * 31 % 251) as u8;
        // SAFETY: each block is written and read within its current size
        // and passed back with the layout it has at that point.
        unsafe {
            let block = allocator.alloc(small);
            assert!(!block.is_null());
            for i in 0..small.size() {
                *block.add(i) = pattern(i);
            }
            // Small to mapped (copied), mapped to larger mapped (moved),
            // mapped to smaller mapped, then back below the threshold.
            let mut layout = small;
            let mut block = block;
            for size in [
                MAPPED_FROM + 12345,
                3 * MAPPED_FROM,
                MAPPED_FROM + 1,
                1 << 19,
            ] {
                block = allocator.realloc(block, layout, size);
                assert!(!block.is_null());
                layout = Layout::from_size_align(size, 8).unwrap();
                let kept = size.min(small.size());
                assert!((0..kept).all(|i| *block.add(i) == pattern(i)), "at {size}");
                if is_mapped(size, 8) {
                    assert_eq!(block as usize % MAPPED_ALIGN, 0);
                    *block.add(size - 1) = 7;
                }
            }
            allocator.dealloc(block, layout);
        }
    }

    /// Shrinking a large block keeps it in place with its bytes, and
    /// gives the pages cut off back to the system: after the new end they
    /// are no longer mapped.
    #[test]
    fn shrinking_a_large_block_unmaps_the_pages_cut_off() {
        let pages = 64;
        let ptr = map(pages * MAPPED_ALIGN);
        assert!(!ptr.is_null());
        let new_size = 20 * MAPPED_ALIGN + 100;
        // SAFETY: the mapping is written within its size, shrunk, read
        // within its new size and unmapped at that size.
        unsafe {
            std::ptr::write_bytes(ptr, 0x77, pages * MAPPED_ALIGN);
            let shrunk = remap(ptr, pages * MAPPED_ALIGN, new_size);
            assert_eq!(shrunk, ptr);
            let kept = std::slice::from_raw_parts(ptr, new_size);
            assert!(kept.iter().all(|&b| b == 0x77));
            // The rest of the last kept page is zeroed.
            let rest = std::slice::from_raw_parts(ptr.add(new_size), MAPPED_ALIGN - 100);
            assert!(rest.iter().all(|&b| b == 0));
            let mut flags = vec![0u8; pages - 21];
            let rc = libc::mincore(
                ptr.add(21 * MAPPED_ALIGN).cast(),
                (pages - 21) * MAPPED_ALIGN,
                flags.as_mut_ptr(),
            );
            assert_eq!(rc, -1, "the pages cut off are still mapped");
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::ENOMEM)
            );
            libc::munmap(ptr.cast(), new_size);
        }
    }

    /// Freeing or shrinking a large block zeroes the pages in memory and
    /// brings in none of those never touched.
    #[test]
    fn wiping_a_large_block_touches_only_its_resident_pages() {
        let pages = 64;
        let ptr = map(pages * MAPPED_ALIGN);
        assert!(!ptr.is_null());
        // SAFETY: pages 3 and 40 of the 64-page mapping are written, then
        // the mapping is wiped, read within its size and unmapped.
        unsafe {
            std::ptr::write_bytes(ptr.add(3 * MAPPED_ALIGN), 0xA5, MAPPED_ALIGN);
            std::ptr::write_bytes(ptr.add(40 * MAPPED_ALIGN + 100), 0x5A, 10);
            wipe_resident(ptr, pages * MAPPED_ALIGN);
            let in_memory = resident(ptr, pages);
            let expected: Vec<bool> = (0..pages).map(|p| p == 3 || p == 40).collect();
            assert_eq!(in_memory, expected);
            for page in [3, 40] {
                let bytes = std::slice::from_raw_parts(ptr.add(page * MAPPED_ALIGN), MAPPED_ALIGN);
                assert!(bytes.iter().all(|&b| b == 0), "page {page}");
            }
            libc::munmap(ptr.cast(), pages * MAPPED_ALIGN);
        }
    }
}

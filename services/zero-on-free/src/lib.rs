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

/// Wraps `A`, zeroing each block before `A` frees it. Growing or shrinking
/// a block moves it here (new block, copy, wipe and free the old one),
/// since `A`'s own `realloc` may free the old block unwiped.
pub struct ZeroOnFree<A>(pub A);

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
        // SAFETY: forwarded unchanged.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes from `A`.
        unsafe {
            wipe(ptr, layout.size());
            self.0.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees that `new_size`, rounded up to the
        // alignment, does not overflow `isize`, and that `ptr` is a live
        // block of `layout.size()` bytes; the new block holds `new_size`
        // bytes, so the copy stays within both.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.0.alloc(new_layout);
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
}

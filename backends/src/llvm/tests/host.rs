//! Running lowered code on the machine that runs the tests: the JIT, and a GPU-like executor
//! for whole kernels (one OS thread per GPU thread, a real barrier, warp shuffles and `mma`
//! emulated by exchanging values between the threads of a warp).
//!
//! The kernel is lowered by exactly the same code as for NVPTX, with the `Host` platform:
//! `tid.x`/`ctaid` are parameters, barriers/shuffles/`mma` are calls into this module, and
//! shared memory is a buffer passed in. The host `mma` adds the products in the interpreter's
//! order (sequential f32, one rounding per product), so a host run must agree with the
//! interpreter bit for bit; the GPU's tensor cores do not (see `dot.rs`).
//!
//! Unsafe code: calling JIT-compiled code is inherently unsafe (the compiler cannot check the
//! machine code or its signature), so this test-only module allows it. Soundness rests on:
//! the entry function's signature is the one built here (`add_entry`), every buffer passed is
//! alive, large enough (padded) and 16-byte aligned for the whole call, and the JIT-compiled
//! code is the verified LLVM module.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anybit_ir::dtype::{DType, Dyadic, ExactValue};
use anybit_ir::interp::{Arg, Buffer};
use anybit_ir::program::{Kernel, ParamType};
use anybit_layouts::{MmaInstruction, MmaOperand};
use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::execution_engine::ExecutionEngine;
use inkwell::module::Linkage;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{CodeModel, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine};
use inkwell::values::BasicMetadataValueEnum;

use crate::llvm::emit::{Em, Platform, host_fn};
use crate::llvm::emitter::Emit;
use crate::llvm::lower::build_kernel;

/// Optimizes `em`'s module for the host and JIT-compiles it, mapping the harness functions.
pub(crate) fn jit<'ctx>(em: &Em<'ctx>) -> Result<ExecutionEngine<'ctx>, String> {
    LlvmTarget::initialize_native(&InitializationConfig::default())?;
    em.module.verify().map_err(|e| {
        let text = em.module.print_to_string().to_string();
        format!(
            "module does not verify: {}\n{}",
            e.to_string().chars().take(2000).collect::<String>(),
            text.chars().take(4000).collect::<String>()
        )
    })?;
    let triple = TargetMachine::get_default_triple();
    let target = LlvmTarget::from_triple(&triple).map_err(|e| e.to_string())?;
    let cpu = TargetMachine::get_host_cpu_name().to_string();
    let features = TargetMachine::get_host_cpu_features().to_string();
    let machine = target
        .create_target_machine(
            &triple,
            &cpu,
            &features,
            OptimizationLevel::Default,
            RelocMode::Default,
            CodeModel::JITDefault,
        )
        .ok_or("no host target machine")?;
    em.module.set_triple(&triple);
    em.module.set_data_layout(&machine.get_target_data().get_data_layout());
    em.module.run_passes("default<O2>", &machine, PassBuilderOptions::create()).map_err(|e| e.to_string())?;
    // The JIT resolves library calls from the process; a missing one would crash at run
    // time, so check the machine code's external calls first.
    let asm =
        machine.write_to_memory_buffer(&em.module, inkwell::targets::FileType::Assembly).map_err(|e| e.to_string())?;
    let asm = String::from_utf8_lossy(asm.as_slice()).to_string();
    let defined: Vec<String> = em
        .module
        .get_functions()
        .filter(|f| f.count_basic_blocks() > 0)
        .map(|f| f.get_name().to_string_lossy().to_string())
        .collect();
    let allowed = [
        "__extendhfsf2",
        "__truncsfhf2",
        "__truncdfhf2",
        "fmaf",
        "fma",
        "rintf",
        "rint",
        "memcpy",
        "memset",
        "sqrtf",
        "sqrt",
    ];
    for line in asm.lines() {
        let line = line.trim();
        if let Some(target) = line.strip_prefix("callq").or_else(|| line.strip_prefix("jmp")) {
            let name = target.trim().trim_end_matches("@PLT");
            if name.starts_with('.') || name.starts_with('*') || name.is_empty() {
                continue;
            }
            if !(allowed.contains(&name) || name.starts_with("anybit_host_") || defined.iter().any(|d| d == name)) {
                return Err(format!("the host code calls `{name}`, which the test process may not provide"));
            }
        }
    }
    if let Ok(path) = std::env::var("ANYBIT_HOST_IR") {
        let _ = std::fs::write(path, em.module.print_to_string().to_string());
    }
    let ee = em.module.create_jit_execution_engine(OptimizationLevel::Default).map_err(|e| e.to_string())?;
    let map = |name: &str, addr: usize| {
        if let Some(f) = em.module.get_function(name) {
            ee.add_global_mapping(&f, addr);
        }
    };
    map(host_fn::BARRIER, host_barrier as *const () as usize);
    map(host_fn::SHFL_BFLY, host_shfl_bfly as *const () as usize);
    map(host_fn::MMA, host_mma as *const () as usize);
    map(host_fn::LDMATRIX, host_ldmatrix as *const () as usize);
    Ok(ee)
}

/// The address of a JIT-compiled function.
pub(crate) fn address(ee: &ExecutionEngine<'_>, name: &str) -> Result<usize, String> {
    ee.get_function_address(name).map_err(|e| format!("{name}: {e}"))
}

// ----- the GPU-like executor -----

/// A barrier that panics instead of waiting forever (a kernel whose threads do not all reach
/// it is a bug the test should report).
struct Rendezvous {
    count: usize,
    state: Mutex<(usize, u64)>,
    cv: Condvar,
}

impl Rendezvous {
    fn new(count: usize) -> Rendezvous {
        Rendezvous { count, state: Mutex::new((0, 0)), cv: Condvar::new() }
    }

    fn wait(&self) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let generation = guard.1;
        guard.0 += 1;
        if guard.0 == self.count {
            guard.0 = 0;
            guard.1 += 1;
            self.cv.notify_all();
            return;
        }
        while guard.1 == generation {
            let (g, timeout) = self.cv.wait_timeout(guard, Duration::from_secs(60)).unwrap_or_else(|e| e.into_inner());
            guard = g;
            if timeout.timed_out() && guard.1 == generation {
                panic!("barrier: not every thread arrived within 60 s (divergent barrier?)");
            }
        }
    }
}

struct Warp {
    rendezvous: Rendezvous,
    values: Vec<AtomicU32>,
    /// Per lane: its `ldmatrix` row address.
    addresses: Vec<std::sync::atomic::AtomicU64>,
    /// Per lane: the 11 `mma` inputs (kind, a0..a3, b0, b1, c0..c3).
    mma: Vec<[AtomicU32; 11]>,
}

struct BlockState {
    barrier: Rendezvous,
    warps: Vec<Warp>,
}

struct ThreadState {
    block: Arc<BlockState>,
    tid: usize,
    mma_out: [u32; 4],
}

thread_local! {
    static THREAD: RefCell<Option<ThreadState>> = const { RefCell::new(None) };
}

fn with_thread<T>(f: impl FnOnce(&mut ThreadState) -> T) -> T {
    THREAD.with(|t| {
        let mut t = t.borrow_mut();
        let state = t.as_mut().expect("a harness function called outside a kernel thread");
        f(state)
    })
}

extern "C" fn host_barrier() {
    let block = with_thread(|t| t.block.clone());
    block.barrier.wait();
}

extern "C" fn host_shfl_bfly(value: u32, mask: u32) -> u32 {
    let (block, tid) = with_thread(|t| (t.block.clone(), t.tid));
    let warp = &block.warps[tid / 32];
    let lane = tid % 32;
    warp.values[lane].store(value, Ordering::SeqCst);
    warp.rendezvous.wait();
    let r = warp.values[(lane ^ mask as usize) % 32].load(Ordering::SeqCst);
    warp.rendezvous.wait();
    r
}

#[allow(clippy::too_many_arguments)]
extern "C" fn host_mma(
    kind: u32,
    a0: u32,
    a1: u32,
    a2: u32,
    a3: u32,
    b0: u32,
    b1: u32,
    c0: u32,
    c1: u32,
    c2: u32,
    c3: u32,
    which: u32,
) -> u32 {
    if which != 0 {
        return with_thread(|t| t.mma_out[which as usize % 4]);
    }
    let (block, tid) = with_thread(|t| (t.block.clone(), t.tid));
    let warp = &block.warps[tid / 32];
    let lane = tid % 32;
    for (slot, v) in warp.mma[lane].iter().zip([kind, a0, a1, a2, a3, b0, b1, c0, c1, c2, c3]) {
        slot.store(v, Ordering::SeqCst);
    }
    warp.rendezvous.wait();
    let inputs: Vec<[u32; 11]> =
        warp.mma.iter().map(|l| std::array::from_fn(|i| l[i].load(Ordering::SeqCst))).collect();
    warp.rendezvous.wait();
    let out = emulate_mma(&inputs, lane);
    with_thread(|t| t.mma_out = out);
    out[0]
}

extern "C" fn host_ldmatrix(addr: u64, count: u32, trans: u32, which: u32) -> u32 {
    if which != 0 {
        return with_thread(|t| t.mma_out[which as usize % 4]);
    }
    let (block, tid) = with_thread(|t| (t.block.clone(), t.tid));
    let warp = &block.warps[tid / 32];
    let lane = tid % 32;
    warp.addresses[lane].store(addr, Ordering::SeqCst);
    warp.rendezvous.wait();
    let rows: Vec<u64> = warp.addresses.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let read = |a: u64| -> u32 {
        // SAFETY: the address is a row of the kernel's shared memory that some lane passed;
        // the shared buffer is alive and 16-byte aligned for the whole block.
        u32::from(unsafe { std::ptr::read(a as *const u16) })
    };
    let mut out = [0u32; 4];
    for (j, o) in out.iter_mut().enumerate().take(count as usize) {
        let (lo, hi) = if trans == 0 {
            let row = rows[8 * j + lane / 4];
            (read(row + 4 * (lane % 4) as u64), read(row + 4 * (lane % 4) as u64 + 2))
        } else {
            let col = 2 * (lane / 4) as u64;
            (read(rows[8 * j + 2 * (lane % 4)] + col), read(rows[8 * j + 2 * (lane % 4) + 1] + col))
        };
        *o = lo | (hi << 16);
    }
    warp.rendezvous.wait();
    with_thread(|t| t.mma_out = out);
    out[0]
}

/// The four result registers of `lane` of one warp-wide `mma`, with the products added in
/// increasing k, each addition rounded (f32) or wrapping (s32).
fn emulate_mma(inputs: &[[u32; 11]], lane: usize) -> [u32; 4] {
    let instruction = match inputs[lane][0] {
        0 => MmaInstruction::M16N8K16F16,
        1 => MmaInstruction::M16N8K16Bf16,
        2 => MmaInstruction::M16N8K32S8,
        _ => MmaInstruction::M16N8K32U8,
    };
    let (m, n, k) = instruction.mnk();
    let per = instruction.elements_per_register();
    let bits = 32 / per as u32;
    let element = |reg: u32, j: usize| -> u32 { (reg >> (bits * j as u32)) & ((1u64 << bits) - 1) as u32 };
    let value = |code: u32| -> f64 {
        match instruction {
            MmaInstruction::M16N8K16F16 => DType::F16.decode_f64(code).unwrap_or(f64::NAN),
            MmaInstruction::M16N8K16Bf16 => DType::BF16.decode_f64(code).unwrap_or(f64::NAN),
            MmaInstruction::M16N8K32S8 => f64::from(code as u8 as i8),
            MmaInstruction::M16N8K32U8 => f64::from(code as u8),
        }
    };
    let fa = instruction.fragment(MmaOperand::A);
    let fb = instruction.fragment(MmaOperand::B);
    let fc = instruction.fragment(MmaOperand::Accumulator);
    let mut a = vec![vec![0f64; k]; m];
    let mut b = vec![vec![0f64; n]; k];
    let mut c = vec![vec![0u32; n]; m];
    for (l, regs) in inputs.iter().enumerate() {
        for s in 0..fa.num_slots() {
            let rc = fa.map(l, s).expect("fragment A");
            a[rc[0]][rc[1]] = value(element(regs[1 + s / per], s % per));
        }
        for s in 0..fb.num_slots() {
            let rc = fb.map(l, s).expect("fragment B");
            b[rc[0]][rc[1]] = value(element(regs[5 + s / per], s % per));
        }
        for s in 0..fc.num_slots() {
            let rc = fc.map(l, s).expect("fragment C");
            c[rc[0]][rc[1]] = regs[7 + s];
        }
    }
    let mut out = [0u32; 4];
    for (s, o) in out.iter_mut().enumerate() {
        let rc = fc.map(lane, s).expect("fragment C");
        let (row, col) = (rc[0], rc[1]);
        *o = match instruction {
            MmaInstruction::M16N8K16F16 | MmaInstruction::M16N8K16Bf16 => {
                let mut acc = f32::from_bits(c[row][col]);
                for kk in 0..k {
                    acc += (a[row][kk] * b[kk][col]) as f32;
                }
                acc.to_bits()
            }
            _ => {
                let mut acc = c[row][col] as i32;
                for kk in 0..k {
                    acc = acc.wrapping_add((a[row][kk] as i32).wrapping_mul(b[kk][col] as i32));
                }
                acc as u32
            }
        };
    }
    out
}

/// `void anybit_entry(i64* args, i32 tid, i32 x, i32 y, i32 z, i8* shared)`: loads the
/// kernel's parameters from `args` (one 64-bit word each) and calls it.
fn add_entry(em: &Em<'_>, kernel: &Kernel) -> Result<(), String> {
    let e = |x: crate::llvm::emit::LowerError| format!("{x:?}");
    let ctx = em.ctx;
    let ptr = ctx.ptr_type(inkwell::AddressSpace::default());
    let i32t = ctx.i32_type();
    let ty =
        ctx.void_type().fn_type(&[ptr.into(), i32t.into(), i32t.into(), i32t.into(), i32t.into(), ptr.into()], false);
    let f = em.module.add_function("anybit_entry", ty, Some(Linkage::External));
    let block = ctx.append_basic_block(f, "entry");
    em.b.position_at_end(block);
    let target = em.module.get_function(&kernel.name).ok_or("no kernel function")?;
    let args_ptr = f.get_nth_param(0).ok_or("param")?;
    let mut args: Vec<BasicMetadataValueEnum<'_>> = Vec::new();
    for (i, p) in kernel.params.iter().enumerate() {
        let addr = em.byte_offset(args_ptr, em.c64(8 * i as i64).map_err(e)?).map_err(e)?;
        let word = em.load(ctx.i64_type().into(), addr, 8).map_err(e)?.into_int_value();
        args.push(match p.ty {
            ParamType::Pointer(_) => em.b.build_int_to_ptr(word, ptr, "").map_err(|x| x.to_string())?.into(),
            ParamType::Scalar(_) => em.trunc(word.into(), i32t.into()).map_err(e)?.into(),
        });
    }
    for i in 1..6 {
        args.push(f.get_nth_param(i).ok_or("param")?.into());
    }
    em.b.build_direct_call(target, &args, "").map_err(|x| x.to_string())?;
    em.b.build_return(None).map_err(|x| x.to_string())?;
    Ok(())
}

type EntryFn = unsafe extern "C" fn(*const u64, u32, u32, u32, u32, *mut u8);

/// The 32-bit word a scalar argument is passed as.
fn scalar_word(dtype: DType, arg: &Arg) -> Result<u64, String> {
    let code = match (arg, dtype.is_integer()) {
        (Arg::Int(v), true) => *v as i32 as u32,
        (Arg::Int(v), false) => {
            dtype.encode_exact(ExactValue::Finite(Dyadic::from_i64(*v)), dtype.default_conversion())
        }
        (Arg::Float(v), false) => match dtype {
            DType::Float(f) => anybit_ir::interp::numeric::encode_float(f, *v),
            _ => dtype.encode(*v),
        },
        _ => return Err(format!("bad scalar argument for {dtype}")),
    };
    Ok(u64::from(code))
}

/// Runs `kernel` on the host, like the GPU would (stores land in the argument buffers).
pub(crate) fn run_on_host(kernel: &Kernel, args: &mut [Arg]) -> Result<(), String> {
    let ctx = Context::create();
    let em = Em::new(&ctx, &kernel.name, Platform::Host);
    let (em, shared_bytes) = build_kernel(em, kernel).map_err(|e| format!("lowering: {e:?}"))?;
    run_built(&em, kernel, shared_bytes, args)
}

/// Runs a kernel whose host function (`Platform::Host`'s signature) `em`'s module holds, with
/// `shared_bytes` of shared memory per block.
pub(crate) fn run_built(em: &Em<'_>, kernel: &Kernel, shared_bytes: usize, args: &mut [Arg]) -> Result<(), String> {
    add_entry(em, kernel)?;
    let ee = jit(em)?;
    let addr = address(&ee, "anybit_entry")?;
    // SAFETY: `anybit_entry` was built by `add_entry` with exactly this signature.
    let entry: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(addr) };

    let grid_params: Vec<Option<i64>> = args
        .iter()
        .map(|a| match a {
            Arg::Int(v) => Some(*v),
            _ => None,
        })
        .collect();
    let mut grid = [1u32; 3];
    for (axis, g) in kernel.grid.iter().enumerate() {
        grid[axis] = g.eval(&grid_params).map_err(|e| e.to_string())? as u32;
    }
    // Buffers: 16-byte aligned, padded (sub-byte atomics touch whole words).
    let mut memories: Vec<Option<Vec<u128>>> = Vec::new();
    let mut words = Vec::new();
    for (p, a) in kernel.params.iter().zip(args.iter()) {
        match (p.ty, a) {
            (ParamType::Pointer(_), Arg::Buffer(b)) => {
                let bytes = b.bytes();
                let mut mem = vec![0u128; bytes.len().div_ceil(16) + 2];
                for (i, &byte) in bytes.iter().enumerate() {
                    mem[i / 16] |= u128::from(byte) << (8 * (i % 16));
                }
                words.push(mem.as_mut_ptr() as u64);
                memories.push(Some(mem));
            }
            (ParamType::Scalar(d), a) => {
                words.push(scalar_word(d, a)?);
                memories.push(None);
            }
            _ => return Err("argument does not match its parameter".into()),
        }
    }
    let threads = kernel.num_threads();
    let args_addr = words.as_ptr() as usize;
    for z in 0..grid[2] {
        for y in 0..grid[1] {
            for x in 0..grid[0] {
                let mut shared = vec![0u128; shared_bytes.div_ceil(16) + 1];
                let shared_addr = shared.as_mut_ptr() as usize;
                let block = Arc::new(BlockState {
                    barrier: Rendezvous::new(threads),
                    warps: (0..threads / 32)
                        .map(|_| Warp {
                            rendezvous: Rendezvous::new(32),
                            values: (0..32).map(|_| AtomicU32::new(0)).collect(),
                            addresses: (0..32).map(|_| std::sync::atomic::AtomicU64::new(0)).collect(),
                            mma: (0..32).map(|_| std::array::from_fn(|_| AtomicU32::new(0))).collect(),
                        })
                        .collect(),
                });
                let result = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let block = block.clone();
                            std::thread::Builder::new()
                                .stack_size(1 << 20)
                                .spawn_scoped(s, move || {
                                    THREAD.with(|c| {
                                        *c.borrow_mut() = Some(ThreadState { block, tid: t, mma_out: [0; 4] })
                                    });
                                    // SAFETY: the arguments and shared memory outlive the call
                                    // (they are dropped after the scope), and the pointers in
                                    // `args` point into live, padded buffers.
                                    unsafe {
                                        entry(args_addr as *const u64, t as u32, x, y, z, shared_addr as *mut u8)
                                    };
                                    THREAD.with(|c| *c.borrow_mut() = None);
                                })
                                .map_err(|e| e.to_string())
                        })
                        .collect();
                    let mut err = None;
                    for h in handles {
                        match h {
                            Ok(h) => {
                                if h.join().is_err() {
                                    err = Some("a kernel thread panicked".to_string());
                                }
                            }
                            Err(e) => err = Some(e),
                        }
                    }
                    err
                });
                drop(shared);
                if let Some(e) = result {
                    return Err(e);
                }
            }
        }
    }
    // Results back into the argument buffers.
    for ((p, a), mem) in kernel.params.iter().zip(args.iter_mut()).zip(memories) {
        if let (ParamType::Pointer(d), Arg::Buffer(b), Some(mem)) = (p.ty, a, mem) {
            let len = b.bytes().len();
            let bytes: Vec<u8> = (0..len).map(|i| (mem[i / 16] >> (8 * (i % 16))) as u8).collect();
            *b = Buffer::from_bytes(d, b.len(), bytes).map_err(|e| e.to_string())?;
        }
    }
    drop(ee);
    Ok(())
}

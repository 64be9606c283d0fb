//! `view`, `broadcast`, `reduce`, `dot` (generic and `mma`), global and shared memory of any
//! width, `copy_async` and control flow: host runs against the interpreter, bit for bit.

use anybit_ir::dtype::DType;
use anybit_ir::interp::{Arg, Buffer};
use anybit_ir::random::SplitMix64;

use super::kernels::compare;
use super::ops::parse;

fn t(name: &str) -> DType {
    name.parse().expect("type")
}

/// Random codes (all codes when `all`, else values in [−r, r]).
fn codes(dtype: DType, n: usize, rng: &mut SplitMix64, range: Option<f64>) -> Buffer {
    let bits = dtype.bits();
    let mask = if bits == 32 { u32::MAX } else { (1u32 << bits) - 1 };
    let c: Vec<u32> = (0..n)
        .map(|_| match range {
            None => (rng.next_u64() as u32) & mask,
            Some(r) if dtype.is_float() => dtype.encode(rng.uniform(-r, r)),
            Some(r) => {
                let lo = dtype.min().to_f64().unwrap_or(0.0).max(-r);
                let hi = dtype.max().to_f64().unwrap_or(0.0).min(r);
                dtype.encode((lo + rng.unit() * (hi - lo)).round())
            }
        })
        .collect();
    Buffer::from_codes(dtype, &c).expect("codes")
}

fn buf(b: Buffer) -> Arg {
    Arg::Buffer(b)
}

#[test]
fn views() {
    let mut rng = SplitMix64::new(31);
    for (src, src_layout, dst, dst_shape, dst_layout) in [
        ("u8[16, 64]", "spatial(16,4).local(1,16)", "u4", "[16, 128]", "spatial(16,4).local(1,32)"),
        ("u8[16, 64]", "spatial(16,4).local(1,16)", "u1", "[16, 512]", "spatial(16,4).local(1,128)"),
        ("f16[16, 64]", "spatial(16,4).local(1,16)", "u8", "[16, 128]", "spatial(16,4).local(1,32)"),
        ("u8[16, 48]", "spatial(16,4).local(1,12)", "f6e3m2", "[16, 64]", "spatial(16,4).local(1,16)"),
        ("u8[16, 48]", "spatial(16,4).local(1,12)", "i3", "[16, 128]", "spatial(16,4).local(1,32)"),
        ("i32[16, 16]", "spatial(16,4).local(1,4)", "f8e5m2", "[16, 64]", "spatial(16,4).local(1,16)"),
        ("u16[16, 16]", "spatial(16,4).local(1,4)", "f32", "[16, 8]", "spatial(16,4).local(1,2)"),
        ("u8[64, 8]", "spatial(16,4).local(4,2)", "u16", "[16, 16]", "spatial(16,4).local(1,4)"),
    ] {
        let (sd, shape) = src.split_once('[').expect("shape");
        let shape = format!("[{shape}");
        let dims: Vec<usize> =
            shape.trim_matches(|c| c == '[' || c == ']').split(',').map(|x| x.trim().parse().expect("n")).collect();
        let ddims: Vec<usize> =
            dst_shape.trim_matches(|c| c == '[' || c == ']').split(',').map(|x| x.trim().parse().expect("n")).collect();
        let text = format!(
            "kernel v(a: ptr {sd}, o: ptr {dst}) grid(1) warps(2) {{
    %ga = global_view %a [{r}, {c}] strides [{c}, 1]
    %go = global_view %o [{dr}, {dc}] strides [{dc}, 1]
    %x = load_global %ga [0, 0] : {src} layout {src_layout}
    %y = view %x : {dst}{dst_shape} layout {dst_layout}
    store_global %y, %go [0, 0]
}}",
            r = dims[0],
            c = dims[1],
            dr = ddims[0],
            dc = ddims[1]
        );
        let kernel = parse(&text);
        let sdt = t(sd);
        let args = vec![
            buf(codes(sdt, dims[0] * dims[1], &mut rng, None)),
            buf(Buffer::zeros(t(dst), ddims[0] * ddims[1]).expect("z")),
        ];
        compare(&kernel, args, None);
    }
}

#[test]
fn broadcasts() {
    let mut rng = SplitMix64::new(32);
    // Thread-local (a register copy) and not (through scratch).
    for (src_shape, src_layout, dst_layout) in [
        ("[1, 64]", "replicated(8).spatial(1,8).local(1,8)", "spatial(8,8).local(8,8)"),
        ("[16, 2]", "spatial(16,2).replicated(2)", "local(16,1).spatial(1,64)"),
        ("[4, 1]", "spatial(4,1).replicated(16)", "spatial(4,16).local(1,4)"),
        ("[2, 8]", "local(2,8).replicated(64)", "spatial(8,8).local(8,8)"),
    ] {
        let dims: Vec<usize> =
            src_shape.trim_matches(|c| c == '[' || c == ']').split(',').map(|x| x.trim().parse().expect("n")).collect();
        let rows = if dst_layout.starts_with("local(16") {
            16
        } else if dst_layout.starts_with("spatial(4,16)") {
            4
        } else {
            64
        };
        let cols = 64;
        let text = format!(
            "kernel b(a: ptr f16, o: ptr f16) grid(1) warps(2) {{
    %ga = global_view %a [{r}, {c}] strides [{c}, 1]
    %go = global_view %o [{rows}, {cols}] strides [{cols}, 1]
    %x = load_global %ga [0, 0] : f16{src_shape} layout {src_layout}
    %y = broadcast %x : f16[{rows}, {cols}] layout {dst_layout}
    store_global %y, %go [0, 0]
}}",
            r = dims[0],
            c = dims[1]
        );
        let kernel = parse(&text);
        let args = vec![
            buf(codes(DType::F16, dims[0] * dims[1], &mut rng, None)),
            buf(Buffer::zeros(DType::F16, rows * cols).expect("z")),
        ];
        compare(&kernel, args, None);
    }
}

#[test]
fn reductions() {
    let mut rng = SplitMix64::new(33);
    // (shape, x layout, dims, result layout, result shape, warps)
    let cases = [
        ("[8, 64]", "spatial(8,8).local(1,8)", "[1]", "spatial(8,1).replicated(8)", "[8, 1]", 2),
        ("[64, 8]", "spatial(64,1).local(1,8)", "[0]", "replicated(64).local(1,8)", "[1, 8]", 2),
        ("[64, 8]", "spatial(64,1).local(1,8)", "[0, 1]", "local(1,1).replicated(64)", "[1, 1]", 2),
        ("[16, 12]", "spatial(16,4).local(1,3)", "[1]", "spatial(16,1).replicated(4)", "[16, 1]", 2),
        ("[2, 96]", "local(2,1).spatial(1,32).local(1,3)", "[1]", "local(2,1).replicated(32)", "[2, 1]", 1),
        ("[3, 64]", "spatial(3,32).local(1,2)", "[0]", "replicated(3).spatial(1,32).local(1,2)", "[1, 64]", 3),
    ];
    for dtype in ["f32", "f16", "bf16", "f8e4m3", "i32", "u4", "i8", "f6e3m2"] {
        let d = t(dtype);
        for (shape, layout, dims, rlayout, rshape, warps) in cases {
            let dims_v: Vec<usize> =
                shape.trim_matches(|c| c == '[' || c == ']').split(',').map(|x| x.trim().parse().expect("n")).collect();
            let rdims: Vec<usize> = rshape
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|x| x.trim().parse().expect("n"))
                .collect();
            for op in ["sum", "max", "min"] {
                let text = format!(
                    "kernel r(a: ptr {dtype}, o: ptr {dtype}) grid(1) warps({warps}) {{
    %ga = global_view %a [{r}, {c}] strides [{c}, 1]
    %go = global_view %o [{rr}, {rc}] strides [{rc}, 1]
    %x = load_global %ga [0, 0] : {dtype}{shape} layout {layout}
    %y = reduce {op} %x dims {dims} keep layout {rlayout}
    store_global %y, %go [0, 0]
}}",
                    r = dims_v[0],
                    c = dims_v[1],
                    rr = rdims[0],
                    rc = rdims[1]
                );
                let kernel = parse(&text);
                let range = if op == "sum" { Some(50.0) } else { None };
                let args = vec![
                    buf(codes(d, dims_v[0] * dims_v[1], &mut rng, range)),
                    buf(Buffer::zeros(d, rdims[0] * rdims[1]).expect("z")),
                ];
                compare(&kernel, args, None);
            }
        }
    }
}

#[test]
fn float_sums_round_once() {
    // Cancellation and ties: exact sum rounded once, as the interpreter does.
    let text = "kernel s(a: ptr f32, o: ptr f32) grid(1) warps(1) {
    %ga = global_view %a [4, 32] strides [32, 1]
    %go = global_view %o [4, 1] strides [1, 1]
    %x = load_global %ga [0, 0] : f32[4, 32] layout local(4,1).spatial(1,32)
    %y = reduce sum %x dims [1] keep layout local(4,1).replicated(32)
    store_global %y, %go [0, 0]
}";
    let kernel = parse(text);
    let mut values = vec![0f64; 128];
    values[0] = 1.0;
    values[1] = 2f64.powi(-24);
    values[2] = 2f64.powi(-60);
    values[32] = 1e30;
    values[33] = 1.0;
    values[34] = -1e30;
    values[64] = -0.0;
    values[65] = -0.0;
    for v in values.iter_mut().skip(96).take(32) {
        *v = -0.0;
    }
    values[96 + 5] = 3.0 * 2f64.powi(-26);
    let args =
        vec![buf(Buffer::from_f64(DType::F32, &values).expect("b")), buf(Buffer::zeros(DType::F32, 4).expect("z"))];
    compare(&kernel, args, None);
}

#[allow(clippy::too_many_arguments)]
fn dot_case(a_t: &str, c_t: &str, m: usize, n: usize, k: usize, la: &str, lb: &str, lc: &str, warps: u32, seed: u64) {
    let text = format!(
        "kernel d(a: ptr {a_t}, b: ptr {a_t}, c: ptr {c_t}, o: ptr {c_t}) grid(1) warps({warps}) {{
    %ga = global_view %a [{m}, {k}] strides [{k}, 1]
    %gb = global_view %b [{k}, {n}] strides [{n}, 1]
    %gc = global_view %c [{m}, {n}] strides [{n}, 1]
    %go = global_view %o [{m}, {n}] strides [{n}, 1]
    %x = load_global %ga [0, 0] : {a_t}[{m}, {k}] layout {la}
    %y = load_global %gb [0, 0] : {a_t}[{k}, {n}] layout {lb}
    %z = load_global %gc [0, 0] : {c_t}[{m}, {n}] layout {lc}
    %r = dot %x, %y, %z
    store_global %r, %go [0, 0]
}}"
    );
    let kernel = parse(&text);
    let mut rng = SplitMix64::new(seed);
    let (at, ct) = (t(a_t), t(c_t));
    let range = if at.is_integer() { Some(1e9) } else { Some(2.0) };
    let args = vec![
        buf(codes(at, m * k, &mut rng, range)),
        buf(codes(at, k * n, &mut rng, range)),
        buf(codes(ct, m * n, &mut rng, if ct.is_integer() { Some(1e3) } else { Some(4.0) })),
        buf(Buffer::zeros(ct, m * n).expect("z")),
    ];
    compare(&kernel, args, None);
}

#[test]
fn generic_dots() {
    let (la, lb, lc) = ("spatial(16,4).local(1,4)", "spatial(4,16).local(4,1)", "spatial(16,4).local(1,4)");
    for (a, c) in [
        ("f32", "f32"),
        ("f16", "f32"),
        ("bf16", "f32"),
        ("f8e4m3", "f32"),
        ("f4e2m1", "f32"),
        ("f16", "f16"),
        ("bf16", "bf16"),
        ("f8e5m2", "f16"),
        ("i8", "i32"),
        ("u4", "i16"),
        ("i3", "u8"),
        ("u16", "u32"),
    ] {
        dot_case(a, c, 16, 16, 16, la, lb, lc, 2, 41);
    }
}

#[test]
fn mma_dots() {
    let fa = "column_local(2,2).spatial(8,4).local(1,2)";
    let fb = "local(2,1).column_spatial(4,8).local(2,1)";
    let fc = "local(2,1).spatial(8,4).local(1,2)";
    let fa8 = "column_local(2,2).spatial(8,4).local(1,4)";
    let fb8 = "local(2,1).column_spatial(4,8).local(4,1)";
    // Native fragments: 2 warps along N, 2 k-tiles, 2 n-tiles per warp.
    let la = format!("replicated(2).local(1,2).{fa}");
    let lb = format!("local(2,1).spatial(1,2).local(1,2).{fb}");
    let lc = format!("spatial(1,2).local(1,2).{fc}");
    for (a, c) in [("f16", "f32"), ("bf16", "f32")] {
        dot_case(a, c, 16, 32, 32, &la, &lb, &lc, 2, 51);
    }
    let la8 = format!("replicated(2).local(1,2).{fa8}");
    let lb8 = format!("local(2,1).spatial(1,2).local(1,2).{fb8}");
    for (a, c) in [("i8", "i32"), ("u8", "i32"), ("u8", "u32")] {
        dot_case(a, c, 16, 32, 64, &la8, &lb8, &lc, 2, 52);
    }
    // Operands in other layouts: converted to fragments through scratch.
    let generic_a = "spatial(16,4).local(2,8)";
    let generic_b = "spatial(4,16).local(8,1)";
    let lc2 = format!("local(2,1).spatial(1,2).{fc}");
    for (a, c) in [("f16", "f32"), ("bf16", "f32")] {
        dot_case(a, c, 32, 16, 32, generic_a, generic_b, &lc2, 2, 53);
    }
    dot_case("i8", "i32", 32, 16, 32, generic_a, generic_b, &lc2, 2, 54);
}

#[test]
fn global_memory_of_any_width() {
    let mut rng = SplitMix64::new(61);
    for dtype in ["u1", "u2", "u3", "u4", "i5", "f6e3m2", "u7", "u8", "u12", "f16", "i24", "f32"] {
        let d = t(dtype);
        for (offset, layout) in [
            (0, "local(2).spatial(64).local(4)"),
            (5, "local(2).spatial(64).local(4)"),
            (3, "spatial(64).local(8)"),
            (0, "replicated(2).spatial(32).local(16)"),
        ] {
            let n = 500;
            let text = format!(
                "kernel m(a: ptr {dtype}, o: ptr {dtype}, n: i32) grid(1) warps(2) {{
    %ga = global_view %a [%n] strides [1]
    %go = global_view %o [%n] strides [1]
    %x = load_global %ga [{offset}] : {dtype}[512] layout {layout}
    store_global %x, %go [{o2}]
}}",
                o2 = 7 - offset.min(7)
            );
            let kernel = parse(&text);
            let args = vec![buf(codes(d, n, &mut rng, None)), buf(codes(d, n, &mut rng, None)), Arg::Int(n as i64)];
            compare(&kernel, args, None);
        }
    }
}

#[test]
fn two_dimensional_views_and_strides() {
    let mut rng = SplitMix64::new(62);
    for dtype in ["u4", "f16", "u3"] {
        let d = t(dtype);
        let text = format!(
            "kernel m(a: ptr {dtype}, o: ptr {dtype}, r: i32, c: i32, s: i32, r0: i32, c0: i32) grid(1) warps(2) {{
    %ga = global_view %a [%r, %c] strides [%s, 1]
    %gt = global_view %a [%c, %r] strides [1, %s]
    %go = global_view %o [%r, %c] strides [%s, 1]
    %x = load_global %ga [%r0, %c0] : {dtype}[16, 32] layout spatial(16,4).local(1,8)
    %y = load_global %gt [%c0, %r0] : {dtype}[32, 16] layout spatial(4,16).local(8,1)
    store_global %x, %go [%c0, %r0]
    store_global %y, %go [%r0, %c0]
}}"
        );
        let kernel = parse(&text);
        for (r, c, s, r0, c0) in [(20, 40, 41, 3, 9), (16, 32, 32, 0, 0), (30, 30, 33, -2, -5), (10, 64, 64, 4, 40)] {
            let len = (r * s) as usize;
            let args = vec![
                buf(codes(d, len, &mut rng, None)),
                buf(codes(d, len, &mut rng, None)),
                Arg::Int(r),
                Arg::Int(c),
                Arg::Int(s),
                Arg::Int(r0),
                Arg::Int(c0),
            ];
            compare(&kernel, args, None);
        }
    }
}

#[test]
fn shared_memory_of_any_width() {
    let mut rng = SplitMix64::new(63);
    for (dtype, shared) in [
        ("f16", "row_major(32,64)"),
        ("f16", "row_major(32,64).swizzle(3,4,3)"),
        ("f16", "column_major(32,64)"),
        ("u4", "row_major(32,64)"),
        ("u3", "row_major(32,64)"),
        ("f8e4m3", "modes([[4:512,8:8],[8:1,8:64]])"),
        ("i16", "strided([32,64],[72,1])"),
    ] {
        let d = t(dtype);
        let text = format!(
            "kernel s(a: ptr {dtype}, o: ptr {dtype}, k: i32) grid(1) warps(2) {{
    %ga = global_view %a [32, 64] strides [64, 1]
    %go = global_view %o [32, 64] strides [64, 1]
    %s = alloc_shared : {dtype}[32, 64] layout {shared}
    %x = load_global %ga [0, 0] : {dtype}[32, 64] layout spatial(8,8).local(4,8)
    store_shared %x, %s [0, 0]
    sync
    %y = load_shared %s [0, 0] : {dtype}[32, 64] layout local(2,1).spatial(16,4).local(1,16)
    %z = load_shared %s [%k, 16] : {dtype}[16, 32] layout spatial(16,4).local(1,8)
    store_global %y, %go [0, 0]
    sync
    store_shared %z, %s [0, 0]
    sync
    %w = load_shared %s [0, 0] : {dtype}[32, 64] layout spatial(32,2).local(1,32)
    store_global %w, %go [0, 0]
    free_shared %s
}}"
        );
        let kernel = parse(&text);
        let args =
            vec![buf(codes(d, 32 * 64, &mut rng, None)), buf(Buffer::zeros(d, 32 * 64).expect("z")), Arg::Int(8)];
        compare(&kernel, args, None);
    }
}

#[test]
fn async_copies() {
    let mut rng = SplitMix64::new(64);
    for (dtype, shared, r0, c0) in [
        ("f16", "row_major(32,64)", 0, 0),
        ("f16", "row_major(32,64).swizzle(3,4,3)", 20, 30),
        ("f16", "row_major(32,64)", 3, 5),
        ("u4", "row_major(32,64)", 0, 8),
        ("f32", "row_major(32,64)", 40, 0),
        ("u8", "column_major(32,64)", 1, 1),
    ] {
        let d = t(dtype);
        let text = format!(
            "kernel c(a: ptr {dtype}, o: ptr {dtype}, r: i32, c: i32, r0: i32, c0: i32) grid(1) warps(4) {{
    %ga = global_view %a [%r, %c] strides [%c, 1]
    %go = global_view %o [32, 64] strides [64, 1]
    %s = alloc_shared : {dtype}[32, 64] layout {shared}
    copy_async %ga [%r0, %c0], %s [0, 0] : [32, 64]
    commit_group
    wait_group 0
    sync
    %y = load_shared %s [0, 0] : {dtype}[32, 64] layout spatial(32,4).local(1,16)
    store_global %y, %go [0, 0]
}}"
        );
        let kernel = parse(&text);
        let (r, c) = (50, 80);
        let args = vec![
            buf(codes(d, r * c, &mut rng, None)),
            buf(Buffer::zeros(d, 32 * 64).expect("z")),
            Arg::Int(r as i64),
            Arg::Int(c as i64),
            Arg::Int(r0),
            Arg::Int(c0),
        ];
        compare(&kernel, args, None);
    }
}

#[test]
fn loops_and_branches() {
    let text = "kernel f(a: ptr f32, o: ptr f32, n: i32, e: i32, flag: u1) grid(1) warps(1) {
    %ga = global_view %a [1, 64] strides [64, 1]
    %go = global_view %o [5, 64] strides [64, 1]
    %z = fill 0.0 : f32[1, 64] layout spatial(1,32).local(1,2)
    %one = const 1 : i32
    %s1 = for %i = 0 to %n step 1 unroll 3 iter (%acc = %z) {
        %x = load_global %ga [0, 0] : f32[1, 64] layout spatial(1,32).local(1,2)
        %if = cast %i : f32
        %y = mul %x, %if
        %acc2 = add %acc, %y
        yield %acc2
    }
    store_global %s1, %go [0, 0]
    %s2, %c2 = for %j = %one to %e step 2 unroll 2 iter (%accb = %z, %cnt = %one) {
        %xb = load_global %ga [0, 0] : f32[1, 64] layout spatial(1,32).local(1,2)
        %inner = for %q = 0 to %j iter (%b = %accb) {
            %b2 = add %b, %xb
            yield %b2
        }
        %cnt2 = add %cnt, 1
        yield %inner, %cnt2
    }
    store_global %s2, %go [1, 0]
    %r = if %flag {
        %p = add %s1, 1.0
        yield %p
    } else {
        %pq = sub %s2, 1.0
        yield %pq
    }
    store_global %r, %go [2, 0]
    %cf = cast %c2 : f32
    %t = fill %cf : f32[1, 64] layout spatial(1,32).local(1,2)
    store_global %t, %go [3, 0]
    %u8 = const 250 : u8
    %s3 = for %k = %u8 to 255 step 2 iter (%accc = %z) {
        %kf = cast %k : f32
        %acc3 = add %accc, %kf
        yield %acc3
    }
    store_global %s3, %go [4, 0]
}";
    let kernel = parse(text);
    let mut rng = SplitMix64::new(71);
    for (n, e, flag) in [(0, 0, 0), (1, 2, 1), (2, 5, 0), (3, 6, 1), (4, 8, 0), (7, 9, 1)] {
        let args = vec![
            buf(codes(DType::F32, 64, &mut rng, Some(3.0))),
            buf(Buffer::zeros(DType::F32, 5 * 64).expect("z")),
            Arg::Int(n),
            Arg::Int(e),
            Arg::Int(flag),
        ];
        compare(&kernel, args, None);
    }
}

#[test]
fn iota_fill_and_scalars() {
    let text = "kernel i(o: ptr i8, p: ptr u3, q: ptr f8e4m3, x: f8e4m3, b: i32) grid(2) warps(1) {
    %go = global_view %o [2, 8, 32] strides [256, 32, 1]
    %gp = global_view %p [2, 64] strides [64, 1]
    %gq = global_view %q [2, 64] strides [64, 1]
    %bi = block_index x
    %i = iota 2 : i8[1, 8, 32] layout local(1,8,1).spatial(1,1,32)
    %j = iota 1 : i8[1, 8, 32] layout local(1,8,1).spatial(1,1,32)
    %k = mul %i, %j
    store_global %k, %go [%bi, 0, 0]
    %u = iota 1 : u3[1, 64] layout spatial(1,32).local(1,2)
    store_global %u, %gp [%bi, 0]
    %c = const 3.7 : f8e4m3
    %d = mul %c, %x
    %bf = cast %b : f8e4m3
    %e = add %d, %bf
    %t = fill %e : f8e4m3[1, 64] layout spatial(1,32).local(1,2)
    store_global %t, %gq [%bi, 0]
}";
    let kernel = parse(text);
    let args = vec![
        buf(Buffer::zeros(t("i8"), 512).expect("z")),
        buf(Buffer::zeros(t("u3"), 128).expect("z")),
        buf(Buffer::zeros(t("f8e4m3"), 128).expect("z")),
        Arg::Float(1.75),
        Arg::Int(-3),
    ];
    compare(&kernel, args, None);
}

#[test]
fn nan_bits_follow_the_interpreter() {
    // Loaded NaN payloads are kept through moves; computed NaNs are canonical, also where the
    // two merge (select, branches, loops).
    for dtype in ["f32", "f16", "bf16"] {
        let text = format!(
            "kernel n(a: ptr {dtype}, o: ptr {dtype}, flag: u1, k: i32) grid(1) warps(1) {{
    %ga = global_view %a [2, 64] strides [64, 1]
    %go = global_view %o [6, 64] strides [64, 1]
    %x = load_global %ga [0, 0] : {dtype}[1, 64] layout spatial(1,32).local(1,2)
    %y = load_global %ga [1, 0] : {dtype}[1, 64] layout spatial(1,32).local(1,2)
    %s = add %x, %y
    %m = lt %x, %y
    %t = select %m, %x, %s
    store_global %t, %go [0, 0]
    %r = if %flag {{
        yield %x
    }} else {{
        yield %s
    }}
    store_global %r, %go [1, 0]
    %l = for %i = 0 to %k iter (%acc = %x) {{
        %acc2 = mul %acc, %y
        yield %acc2
    }}
    store_global %l, %go [2, 0]
    %w = max %x, %y
    store_global %w, %go [3, 0]
    %c = cast %x : {dtype}
    store_global %c, %go [4, 0]
    %v = view %s : {dtype}[1, 64] layout spatial(1,32).local(1,2)
    store_global %v, %go [5, 0]
}}"
        );
        let kernel = parse(&text);
        let d = t(dtype);
        let mut rng = SplitMix64::new(81);
        let bits = d.bits();
        let nan_base: u32 = if bits == 32 {
            0x7f80_0000
        } else if dtype == "f16" {
            0x7c00
        } else {
            0x7f80
        };
        let payload_mask: u32 = if bits == 32 {
            0x7f_ffff
        } else if dtype == "f16" {
            0x3ff
        } else {
            0x7f
        };
        let sign: u32 = 1 << (bits - 1);
        let codes: Vec<u32> = (0..128)
            .map(|i| match i % 4 {
                0 => nan_base | ((rng.next_u64() as u32) & payload_mask) | 1 | if i % 8 == 0 { sign } else { 0 },
                1 => nan_base,
                _ => d.encode(rng.uniform(-3.0, 3.0)),
            })
            .collect();
        for (flag, k) in [(0, 0), (1, 0), (0, 2), (1, 3)] {
            let args = vec![
                buf(Buffer::from_codes(d, &codes).expect("codes")),
                buf(Buffer::zeros(d, 6 * 64).expect("z")),
                Arg::Int(flag),
                Arg::Int(k),
            ];
            compare(&kernel, args, None);
        }
    }
}

#[test]
fn reductions_without_keep() {
    let mut rng = SplitMix64::new(91);
    let text = "kernel r(a: ptr f16, o: ptr f32) grid(1) warps(2) {
    %ga = global_view %a [8, 64] strides [64, 1]
    %go = global_view %o [8] strides [1]
    %x = load_global %ga [0, 0] : f16[8, 64] layout spatial(8,8).local(1,8)
    %xf = cast %x : f32
    %y = reduce max %xf dims [1] layout spatial(8).replicated(8)
    store_global %y, %go [0]
}";
    let kernel = parse(text);
    let args = vec![buf(codes(DType::F16, 512, &mut rng, None)), buf(Buffer::zeros(DType::F32, 8).expect("z"))];
    compare(&kernel, args, None);
}

#[test]
fn pipelined_async_copies() {
    // The wait of each iteration waits for the copy issued at the end of the previous one.
    let text = "kernel p(a: ptr f16, o: ptr f32, k: i32) grid(1) warps(4) {
    %ga = global_view %a [64, %k] strides [%k, 1]
    %go = global_view %o [64, 32] strides [32, 1]
    %s0 = alloc_shared : f16[64, 32] layout row_major(64,32)
    %s1 = alloc_shared : f16[64, 32] layout row_major(64,32)
    copy_async %ga [0, 0], %s0 [0, 0] : [64, 32]
    commit_group
    %z = fill 0.0 : f32[64, 32] layout spatial(32,4).local(2,8)
    %acc = for %k0 = 0 to %k step 64 iter (%c = %z) {
        %k1 = add %k0, 32
        copy_async %ga [0, %k1], %s1 [0, 0] : [64, 32]
        commit_group
        wait_group 1
        sync
        %t0 = load_shared %s0 [0, 0] : f16[64, 32] layout spatial(32,4).local(2,8)
        %f0 = cast %t0 : f32
        %c1 = add %c, %f0
        sync
        %k2 = add %k0, 64
        copy_async %ga [0, %k2], %s0 [0, 0] : [64, 32]
        commit_group
        wait_group 1
        sync
        %t1 = load_shared %s1 [0, 0] : f16[64, 32] layout spatial(32,4).local(2,8)
        %f1 = cast %t1 : f32
        %c2 = add %c1, %f1
        sync
        yield %c2
    }
    wait_group 0
    store_global %acc, %go [0, 0]
}";
    let kernel = parse(text);
    let mut rng = SplitMix64::new(92);
    for k in [64i64, 192, 96] {
        let args = vec![
            buf(codes(DType::F16, 64 * k as usize, &mut rng, Some(4.0))),
            buf(Buffer::zeros(DType::F32, 64 * 32).expect("z")),
            Arg::Int(k),
        ];
        compare(&kernel, args, None);
    }
}

#[test]
fn dynamic_shared_memory_and_nonpositive_steps() {
    // 64 KiB of shared memory: dynamic shared memory on the GPU.
    let text = "kernel d(a: ptr f32, o: ptr f32, step: i32) grid(1) warps(4) {
    %ga = global_view %a [128, 128] strides [128, 1]
    %go = global_view %o [128, 128] strides [128, 1]
    %s = alloc_shared : f32[128, 128] layout row_major(128,128)
    %x = load_global %ga [0, 0] : f32[128, 128] layout spatial(32,4).local(4,32)
    store_shared %x, %s [0, 0]
    sync
    %y = load_shared %s [0, 0] : f32[128, 128] layout local(4,1).spatial(32,4).local(1,32)
    %r = for %i = 0 to 3 step %step iter (%acc = %y) {
        %a2 = add %acc, %acc
        yield %a2
    }
    store_global %r, %go [0, 0]
}";
    let kernel = parse(text);
    let mut rng = SplitMix64::new(93);
    let input = codes(DType::F32, 128 * 128, &mut rng, Some(8.0));
    let args = vec![buf(input.clone()), buf(Buffer::zeros(DType::F32, 128 * 128).expect("z")), Arg::Int(1)];
    compare(&kernel, args, None);
    // A step ≤ 0 skips the loop on the GPU (the interpreter reports an error).
    for (step, run) in [0, -2].into_iter().flat_map(|s| super::host_runners().into_iter().map(move |r| (s, r))) {
        let mut args = vec![buf(input.clone()), buf(Buffer::zeros(DType::F32, 128 * 128).expect("z")), Arg::Int(step)];
        run(&kernel, &mut args).expect("host run");
        let Arg::Buffer(out) = &args[1] else { panic!("no buffer") };
        assert_eq!(out.codes(), input.codes(), "step {step}");
    }
    let module = anybit_ir::program::Module { layouts: vec![], kernels: vec![kernel] };
    let targets = [crate::Target::Sm80, crate::Target::Sm90, crate::Target::Sm86];
    for (backend, target) in super::backends().into_iter().flat_map(|b| targets.into_iter().map(move |t| (b, t))) {
        let compiled = backend.compile(&module, target, &crate::CompileOptions::default()).expect("compile");
        let k = &compiled.kernels[0];
        assert_eq!(k.shared_memory_bytes, 65536);
        assert!(k.ptx.contains(".extern .shared"), "dynamic shared memory expected");
        assert!(compiled.manifest.kernels[0].needs_shared_memory_opt_in);
        super::ptx::check_ptx(&k.ptx, target, "dynamic_smem");
    }
}

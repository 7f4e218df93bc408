import sys, re, collections
# Sum self cost per object and per (object, function) in a callgrind dump (positions: instr line with --dump-instr=yes).
def parse(path):
    ob_names = {}; fn_names = {}
    ob = fn = None; per_ob = collections.Counter(); per_fn = collections.Counter()
    in_call = 0
    pos_fields = 1
    with open(path) as f:
        for line in f:
            if line.startswith("positions:"):
                pos_fields = len(line.split()) - 1
            m = re.match(r"^(c?)(ob|fn|fl|fi|fe|cfn|cob|cfl|cfi)=\((\d+)\)(?: (.*))?", line)
            if m:
                kind = m.group(1) + m.group(2); idx = m.group(3); name = m.group(4)
                table = ob_names if kind in ("ob", "cob") else fn_names if kind in ("fn", "cfn") else None
                if table is not None and name: table[idx] = name.strip()
                if kind == "ob": ob = ob_names.get(idx, idx)
                elif kind == "fn": fn = fn_names.get(idx, idx)
                continue
            if line.startswith("calls="):
                in_call = 1; continue
            if line and (line[0].isdigit() or line[0] in "+-*"):
                parts = line.split()
                if in_call:
                    in_call = 0; continue  # inclusive cost of a call: skip for self
                if len(parts) > pos_fields:
                    c = int(parts[pos_fields]); per_ob[ob] += c; per_fn[(ob, fn)] += c
    return per_ob, per_fn
per_ob, per_fn = parse(sys.argv[1])
n = float(sys.argv[2]) if len(sys.argv) > 2 else 1
tot = sum(per_ob.values())
print("total per request", round(tot / n))
for ob, c in per_ob.most_common(12): print(f"{c/n:12.0f} {100*c/tot:5.1f}% {ob}")
jit = collections.Counter()
for (ob, fn), c in per_fn.items():
    if ob == "???":
        try: a = int(fn.split("'")[0], 16)
        except: a = 0
        jit["JIT(>4G)" if a > 0x100000000 else "low ???"] += c
    else: jit[ob.split("/")[-1]] += c
print({k: round(v / n) for k, v in jit.items()})
for (ob, fn), c in per_fn.most_common(int(sys.argv[3]) if len(sys.argv) > 3 else 25): print(f"{c/n:10.0f} {ob.split('/')[-1]} {fn}")

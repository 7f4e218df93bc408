import sys, collections, re
# usage: jit.py dump requests named.wat
exec(open("/work/wt/sdk/scratch/split.py").read().split("per_ob, per_fn = parse")[0])
dump, n, wat = sys.argv[1], float(sys.argv[2]), sys.argv[3]
names = [l.split()[1] for l in open(wat) if l.startswith(" (func ")]
per_ob, per_fn = parse(dump)
tot_all = sum(per_ob.values())
jit = {}
for (ob, fn), c in per_fn.items():
    try: a = int(fn.split("'")[0], 16)
    except: continue
    if a > 0x100000000: jit[a] = jit.get(a, 0) + c
base = max(jit, key=jit.get) & ~0xfff
rows = collections.Counter()
for a, c in jit.items():
    k = (a - base) // 8
    rows[names[k] if 0 <= a - base < 4096 and (a - base) % 8 == 0 and k < len(names) else ("other JIT" if not 0 <= a - base < 4096 else "?" + hex(a))] += c
tot = sum(rows.values())
print("all", round(tot_all / n), "JIT", round(tot / n))
for k, c in rows.most_common(int(sys.argv[4]) if len(sys.argv) > 4 else 30): print(f"{c/n:8.0f} {k}")

import struct, sys, zlib, os
from pathlib import Path
def extract(rcc, outdir, exts=('.jpg', '.jpeg', '.png', '.webp')):
    b = open(rcc, 'rb').read()
    assert b[:4] == b'qres', rcc
    ver, tree, data, names = struct.unpack('>IIII', b[4:20])
    node = 22 if ver >= 2 else 14
    def name(off):
        n, = struct.unpack('>H', b[names+off:names+off+2])
        return b[names+off+6:names+off+6+2*n].decode('utf-16-be')
    out = []
    def walk(i, path):
        p = tree + i*node
        noff, flags = struct.unpack('>IH', b[p:p+6])
        nm = name(noff) if i else ''
        full = f'{path}/{nm}' if nm else path
        if flags & 2:
            cnt, first = struct.unpack('>II', b[p+6:p+14])
            for c in range(first, first+cnt): walk(c, full)
        else:
            doff, = struct.unpack('>I', b[p+10:p+14])
            q = data + doff; sz, = struct.unpack('>I', b[q:q+4]); raw = b[q+4:q+4+sz]
            if not full.lower().endswith(exts): return
            if flags & 1: raw = zlib.decompress(raw[4:])
            elif flags & 4:
                import zstandard; raw = zstandard.ZstdDecompressor().decompress(raw, max_output_size=1<<28)
            dst = Path(outdir) / full.lstrip('/'); dst.parent.mkdir(parents=True, exist_ok=True); dst.write_bytes(raw); out.append(full)
    walk(0, '')
    return out
if __name__ == '__main__':
    tot = 0
    for f in sys.argv[2:]:
        try: tot += len(extract(f, sys.argv[1]))
        except Exception as e: print('ERR', f, repr(e))
    print(tot, 'files')

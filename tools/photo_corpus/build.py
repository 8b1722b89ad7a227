import csv, fnmatch, hashlib, io, json, os, re, shutil, sys
from pathlib import Path
from PIL import Image, ImageOps
Image.MAX_IMAGE_PIXELS = None
ST = Path(os.environ.get('PHOTO_STAGING', 'photo_staging')).resolve(); U = ST / 'unpacked'; OUT = ST / 'photos'
SP = ST / 'venv/lib/python3.11/site-packages'

def debver(pkg):
    for l in os.popen(f"dpkg-deb -f {list((ST/'debs').glob(pkg+'_*.deb'))[0]} Version"):
        return l.strip()
def distver(name):
    d = list(SP.glob(name + '-*.dist-info'))[0].name
    return d[len(name)+1:-len('.dist-info')]

SOURCES = {
  'skimage':   dict(package='scikit-image (PyPI)', version=distver('scikit_image'), root=SP),
  'sklearn':   dict(package='scikit-learn (PyPI)', version=distver('scikit_learn'), root=SP),
  'matplotlib':dict(package='matplotlib (PyPI)', version=distver('matplotlib'), root=SP),
  'opencv':    dict(package='opencv-doc', version=debver('opencv-doc'), root=U/'opencv-doc/usr/share/doc/opencv-doc', prefix='usr/share/doc/opencv-doc/'),
  'lomiri16':  dict(package='lomiri-wallpapers-16.04', version=debver('lomiri-wallpapers-16.04'), root=U/'lomiri-wallpapers-16.04', prefix=''),
  'lomiri20':  dict(package='lomiri-wallpapers-20.04', version=debver('lomiri-wallpapers-20.04'), root=U/'lomiri-wallpapers-20.04', prefix=''),
  'mate':      dict(package='mate-backgrounds', version=debver('mate-backgrounds'), root=U/'mate-backgrounds', prefix=''),
  'gcompris':  dict(package='gcompris-qt-data', version=debver('gcompris-qt-data'), root=U/'gcompris-x/gcompris', prefix=''),
  'plasma':    dict(package='plasma-workspace-wallpapers', version=debver('plasma-workspace-wallpapers'), root=U/'plasma-workspace-wallpapers', prefix=''),
}
LABEL = {'lomiri16': 'lomiri', 'lomiri20': 'lomiri'}

def dep5(path):
    stanzas, cur, key = [], {}, None
    for line in open(path, encoding='utf-8', errors='replace').read().splitlines() + ['']:
        if not line.strip():
            if cur: stanzas.append(cur)
            cur, key = {}, None; continue
        if line[0] in ' \t' and key:
            cur[key] += '\n' + line.strip(); continue
        m = re.match(r'^([A-Za-z-]+):\s*(.*)$', line)
        if m: key = m.group(1).lower(); cur[key] = m.group(2)
    return [s for s in stanzas if 'files' in s]

def dep5_lookup(stanzas, relpath):
    hit = None
    parts = relpath.split('/')
    tails = ['/'.join(parts[i:]) for i in range(len(parts))]
    for s in stanzas:
        pats = s['files'].split()
        for p in pats:
            if p == '*' or any(fnmatch.fnmatchcase(t, p) or (p.split('/')[-1] == t and '/' in p) for t in tails):
                hit = dict(s, matched=p)
    return hit

def plasma_meta(relpath):
    d = relpath.split('/')[3]
    j = json.load(open(U/'plasma-workspace-wallpapers/usr/share/wallpapers'/d/'metadata.json'))
    kp = j['KPlugin']
    return ', '.join(a.get('Name', '') for a in kp.get('Authors', [])), kp.get('License', '')

STATIC = {
  'skimage/data/astronaut.png': ('NASA (photograph of Eileen Collins)', 'Public domain (skimage docstring: "No known copyright restrictions, released into the public domain"); package BSD-3-Clause'),
  'skimage/data/chelsea.png': ('Stefan van der Walt', 'CC0 (skimage docstring: "CC0 by the photographer")'),
  'skimage/data/coffee.png': ('Rachel Michetti (courtesy of Pikolo Espresso Bar)', 'CC0 (skimage docstring: "CC0 by the photographer")'),
  'skimage/data/rocket.jpg': ('SpaceX', 'Public domain (skimage docstring: released into the public domain by SpaceX)'),
  'skimage/data/motorcycle_left.png': ('Middlebury 2014 stereo dataset (N. Nesic, P. Westling, X. Wang, Y. Kitajima, G. Krathwohl, D. Scharstein)', 'BSD-3-Clause (scikit-image LICENSE.txt, Files: *, copyright the scikit-image team); no separate image licence stated'),
  'sklearn/datasets/images/china.jpg': ('danielbuechele (Flickr), retrieved by Robert Layton', 'CC-BY-2.0 (sklearn/datasets/images/README.txt)'),
  'sklearn/datasets/images/flower.jpg': ('README attribution: "Some rights reserved by danielbuechele" (sic; source link is Flickr user vultilion), retrieved by Robert Layton', 'CC-BY-2.0 (sklearn/datasets/images/README.txt)'),
  'matplotlib/mpl-data/sample_data/grace_hopper.jpg': ('U.S. Navy (official portrait of Grace M. Hopper)', 'Public domain (work of the U.S. federal government); shipped in matplotlib sample_data (matplotlib licence); no licence text in the wheel for this file'),
}
CROPS = {'opencv4/html/Remap_Tutorial_Original_Image.jpg': 175}

cr = {k: dep5(U/k/f'usr/share/doc/{k}/copyright') for k in ['mate-backgrounds', 'lomiri-wallpapers-16.04', 'lomiri-wallpapers-20.04', 'plasma-workspace-wallpapers', 'opencv-doc']}

def sha(b): return hashlib.sha256(b).hexdigest()

if OUT.exists(): shutil.rmtree(OUT)
entries = []
rows = [r for r in csv.reader(open(ST/'tools/selection.tsv'), delimiter='\t') if r and not r[0].startswith('#')]
for r in rows:
    r += [''] * (7 - len(r))
    src, rel, cat, split, group, short, note = r[:7]
    S = SOURCES[src]
    if src in ('skimage', 'sklearn', 'matplotlib'):
        path = S['root'] / rel; orig_path = rel
        author, lic = STATIC[rel]
    else:
        path = S['root'] / rel; orig_path = S.get('prefix', '') + rel
        if src == 'gcompris':
            act = rel.split('/')[2]
            orig_path = f'usr/share/gcompris-qt/rcc/{act}.rcc:/gcompris/{rel}'
            g = {l.split('\t')[0]: l.rstrip('\n').split('\t') for l in open(ST/'tools/gc_specific.txt')}[rel]
            author = g[3] + (f' (source: {g[4]})' if g[4] else '')
            lic = g[2] + f' (debian/copyright Files: {g[1]})'
        elif src == 'opencv':
            st = [x for x in cr['opencv-doc'] if x['files'].strip() == '*'][0]  # examples/ = upstream samples/, html = doc/: only Files: * applies
            author = st['copyright'].replace('\n', '; '); lic = st['license'].split('\n')[0] + ' (debian/copyright Files: *)'
        elif src == 'plasma':
            st = dep5_lookup(cr['plasma-workspace-wallpapers'], rel)
            a, ml = plasma_meta(rel)
            author = a + ' (upstream metadata.json); copyright: ' + st['copyright']
            lic = st['license'].split('\n')[0] + ' (debian/copyright Files: *); upstream metadata.json License: ' + ml
        else:
            key = S['package']; st = dep5_lookup(cr[key], rel)
            author = st['copyright'].replace('\n', '; ').replace('´', '').strip()
            lic = st['license'].split('\n')[0] + ' (debian/copyright Files: ' + st['matched'] + ')'
            if st['files'].strip() == '*' : raise SystemExit(f'no per-file stanza for {rel}')
    raw = path.read_bytes()
    im = Image.open(io.BytesIO(raw)); im.load()
    im = ImageOps.exif_transpose(im)
    if im.mode in ('RGBA', 'LA', 'P'):
        im = im.convert('RGBA'); bg = Image.new('RGB', im.size, 'white'); bg.paste(im, mask=im.split()[3]); im = bg
    im = im.convert('RGB')
    if rel in CROPS:
        im = im.crop((3, 3, im.width - 3, CROPS[rel]))
    w, h = im.size; s = min(w, h)
    if s > 512:
        f = 512 / s; im = im.resize((max(512, round(w * f)), max(512, round(h * f))), Image.LANCZOS)
    label = LABEL.get(src, src)
    out = OUT / cat / f'{label}-{short}.jpg'; out.parent.mkdir(parents=True, exist_ok=True)
    assert not out.exists(), out
    im.save(out, 'JPEG', quality=92, subsampling=0, optimize=True)
    e = dict(file=str(out.relative_to(OUT)), category=cat, split=split, group=group,
             source_package=S['package'], package_version=S['version'], original_path=orig_path,
             author=author, licence=lic, original_sha256=sha(raw), sha256=sha(out.read_bytes()),
             width=im.size[0], height=im.size[1])
    if note: e['note'] = note
    e['provenance_caveat'] = any(k in note for k in ('caveat', 'Middlebury', 'ICDAR'))
    entries.append(e)
json.dump(entries, open(OUT/'manifest.json', 'w'), indent=1, ensure_ascii=False)
print(len(entries), 'photos', sum(p.stat().st_size for p in OUT.rglob('*.jpg'))/1e6, 'MB')

import collections, json, os, shutil
from pathlib import Path
ST = Path(os.environ.get('PHOTO_STAGING', 'photo_staging')).resolve(); OUT = ST / 'photos'; SP = ST / 'venv/lib/python3.11/site-packages'; U = ST / 'unpacked'
E = json.load(open(OUT / 'manifest.json'))
L = OUT / 'licenses'; L.mkdir(exist_ok=True)
copies = {
 'opencv-doc': (U/'opencv-doc/usr/share/doc/opencv-doc/copyright', 'opencv-doc.copyright'),
 'mate-backgrounds': (U/'mate-backgrounds/usr/share/doc/mate-backgrounds/copyright', 'mate-backgrounds.copyright'),
 'lomiri-wallpapers-16.04': (U/'lomiri-wallpapers-16.04/usr/share/doc/lomiri-wallpapers-16.04/copyright', 'lomiri-wallpapers.copyright'),
 'lomiri-wallpapers-20.04': (U/'lomiri-wallpapers-20.04/usr/share/doc/lomiri-wallpapers-20.04/copyright', 'lomiri-wallpapers.copyright'),
 'gcompris-qt-data': (U/'gcompris-qt-data/usr/share/doc/gcompris-qt-data/copyright', 'gcompris-qt-data.copyright'),
 'plasma-workspace-wallpapers': (U/'plasma-workspace-wallpapers/usr/share/doc/plasma-workspace-wallpapers/copyright', 'plasma-workspace-wallpapers.copyright'),
 'scikit-image (PyPI)': (SP/'scikit_image-0.26.0.dist-info/LICENSE.txt', 'scikit-image.LICENSE.txt'),
 'scikit-learn (PyPI)': (SP/'sklearn/datasets/images/README.txt', 'scikit-learn.datasets-images-README.txt'),
 'matplotlib (PyPI)': (SP/'matplotlib-3.11.2.dist-info/LICENSE', 'matplotlib.LICENSE'),
}
for k, (src, dst) in copies.items(): shutil.copyfile(src, L/dst)
text = {
 'scikit-image (PyPI)': 'Image provenance and licence as stated in the docstrings of `skimage/data/_fetchers.py` (astronaut, chelsea, coffee, rocket, stereo_motorcycle); package licence BSD-3-Clause, `licenses/scikit-image.LICENSE.txt` (Files: *).',
 'scikit-learn (PyPI)': 'CC-BY-2.0 (https://creativecommons.org/licenses/by/2.0/), as stated in `sklearn/datasets/images/README.txt` (copied to `licenses/scikit-learn.datasets-images-README.txt`).',
 'matplotlib (PyPI)': 'grace_hopper.jpg is the official U.S. Navy portrait of Commodore Grace M. Hopper, a work of the U.S. federal government (public domain). The wheel carries no per-file statement; matplotlib licence in `licenses/matplotlib.LICENSE`.',
 'opencv-doc': 'Debian copyright file (`/usr/share/doc/opencv-doc/copyright`, copied to `licenses/opencv-doc.copyright`): no specific stanza covers the installed `examples/` (upstream `samples/`) or `opencv4/html` (upstream `doc/`) images, so `Files: *` applies: Copyright 2000-2022 Intel Corporation et al., License: Apache-2.0 AND BSD-3-Clause (texts: /usr/share/common-licenses/Apache-2.0, BSD-3-Clause in the copyright file). Debian repacks the source (+dfsg) and strips the non-free Lena images (Files-Excluded), but the third-party provenance of several sample photos is not documented (see caveats below).',
 'lomiri-wallpapers-16.04': 'Per-file stanzas in the Debian copyright file (copied to `licenses/lomiri-wallpapers.copyright`, which also contains the full CC-BY-4.0, CC-BY-SA-3.0, CC-BY-SA-4.0 and CC0-1.0 texts).',
 'lomiri-wallpapers-20.04': 'Per-file stanzas in the Debian copyright file (same file as lomiri-wallpapers-16.04; `licenses/lomiri-wallpapers.copyright`).',
 'mate-backgrounds': 'Per-file stanzas in the Debian copyright file (copied to `licenses/mate-backgrounds.copyright`); all photos used are GPL-2+ (text: /usr/share/common-licenses/GPL-2, https://www.gnu.org/licenses/old-licenses/gpl-2.0.html).',
 'gcompris-qt-data': 'Per-file stanzas of the Debian copyright file (copied to `licenses/gcompris-qt-data.copyright`), most with the Wikimedia Commons source page of the photo. Debian installs the images inside Qt resource bundles (`usr/share/gcompris-qt/rcc/*.rcc`) re-encoded as WebP; they were extracted with a small rcc reader and `original_sha256` is the hash of the extracted WebP resource. Only files with their own stanza were used (files that fall back to `Files: *`, the code copyright, were rejected as unclear), and stanzas whose description visibly did not match the picture were rejected too. Licence texts: https://creativecommons.org/licenses/ (by/1.0, by/2.0, by/3.0, by-sa/2.0, by-sa/3.0, by-sa/4.0), GPL-3: /usr/share/common-licenses/GPL-3.',
 'plasma-workspace-wallpapers': 'Debian copyright file (`licenses/plasma-workspace-wallpapers.copyright`): Files: * Copyright 2014 KDE Visual Design Group, License GPL-2+. Each wallpaper\'s upstream `metadata.json` names the photographer and an upstream licence (LGPLv3 for all photos used here); both are recorded per file.',
}
by = collections.defaultdict(list)
for e in E: by[(e['source_package'], e['package_version'])].append(e)
md = ['# Photographs: licences and attribution', '',
 'Every file in this folder is a photograph taken from a package of Debian 12 (bookworm) or PyPI, listed below with the licence and the author or copyright holder that the package\'s copyright/licence file states for it. `manifest.json` holds the same data per file (package version, path inside the package, SHA-256 of the original and of the stored file).', '',
 '**Changes made** (all photos): EXIF orientation applied, converted to RGB, downscaled so the short side is 512 px (never enlarged; smaller originals keep their size), re-encoded as JPEG (quality 92, 4:4:4). Transparent PNGs were flattened on white. `animal/opencv-shepherd_dog.jpg` additionally had an image-viewer status bar and a 3 px window border cropped off. No other edits.', '',
 'Copies of the packages\' copyright/licence files are in `licenses/`.', '']
for (pkg, ver), es in sorted(by.items()):
    md += [f'## {pkg} {ver}', '', text[pkg], '', '| file | original path | author / copyright (as stated) | licence |', '|---|---|---|---|']
    for e in sorted(es, key=lambda e: e['file']):
        md.append(f"| `{e['file']}` | `{e['original_path']}` | {e['author'].replace('|', '/')} | {e['licence'].replace('|', '/')} |")
    md.append('')
md += ['## Provenance caveats', '',
 'These files are covered by their package\'s licence statement as quoted above, but the package does not document where the photograph itself came from; the original photographer may not have licensed it. Drop them if a stricter standard than "the distributor\'s copyright file covers it" is wanted (`provenance_caveat: true` in manifest.json). More generally, no opencv-doc sample photo names its photographer; the ones listed are those whose third-party origin is recognisable.', '']
for e in E:
    if e['provenance_caveat']:
        md.append(f"- `{e['file']}`: {e['note']}")
md += ['', 'gcompris-qt-data: several per-file stanzas describe a different picture than the file now shipped under that name (fishes/fish9, fish10, fish20 and tools/multimeter1 were rejected for that), so the stanzas are partly stale; the 17 photos kept were checked by eye against their stanza\'s description (species / object / place), which cannot rule out a replaced photo of the same subject.', '']
(OUT / 'LICENSES.md').write_text('\n'.join(md))
print(len(md), 'lines')

import sys, math
from PIL import Image, ImageDraw, ImageOps
Image.MAX_IMAGE_PIXELS = None
out = sys.argv[1]; files = [l.strip() for l in open(sys.argv[2]) if l.strip()]
T = int(sys.argv[3]) if len(sys.argv)>3 else 230; cols = int(sys.argv[4]) if len(sys.argv)>4 else 5; rows = math.ceil(len(files)/cols)
sheet = Image.new("RGB", (cols*T, rows*(T+14)), "white"); d = ImageDraw.Draw(sheet)
for i, f in enumerate(files):
    try:
        im = Image.open(f); im.draft("RGB", (T*2, T*2)); im = ImageOps.exif_transpose(im).convert("RGB"); im.thumbnail((T, T))
    except Exception as e:
        im = Image.new("RGB", (T, T), "red")
    x, y = (i % cols)*T, (i//cols)*(T+14)
    sheet.paste(im, (x, y+14)); d.text((x+2, y), f"{i} {f.split('/')[-1][:30]}", fill="black")
sheet.save(out)

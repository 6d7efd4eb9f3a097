"""Checks the Lambda zip: it holds an executable aarch64 ELF named `bootstrap`."""
import sys
import zipfile

EM_AARCH64 = 183
LIMIT = 6 * 1024 * 1024

path = sys.argv[1]
with zipfile.ZipFile(path) as archive:
    info = archive.getinfo("bootstrap")
    head = archive.open(info).read(20)
size = __import__("os").path.getsize(path)
problems = []
if head[:4] != b"\x7fELF":
    problems.append("bootstrap is not an ELF file")
elif int.from_bytes(head[18:20], "little") != EM_AARCH64:
    problems.append(f"bootstrap is for machine {int.from_bytes(head[18:20], 'little')}, not aarch64 ({EM_AARCH64})")
if not (info.external_attr >> 16) & 0o111:
    problems.append("bootstrap is not executable in the zip")
if size > LIMIT:
    problems.append(f"zip is {size} bytes, over the {LIMIT} byte budget")
if problems:
    sys.exit(f"{path}: " + "; ".join(problems))
print(f"{path}: aarch64 bootstrap, {size / 1e6:.2f} MB")

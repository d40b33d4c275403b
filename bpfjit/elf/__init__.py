"""Loading clang-built BPF ELF objects: `ObjectFile.open(path or bytes)` -> program and map specs,
`.load(runtime=None, config=None, programs=None)` -> live maps and ready Programs (see docs/elf.md).

reader.py (ELF via pyelftools), btf.py (BTF types), maps.py (map specs and creation), sections.py (program
types from section names), relocate.py (relocations, bpf-to-bpf linking), objectfile.py (the API).
"""
from .maps import MapSpec
from .objectfile import LoadedObject, ObjectFile, ProgramSpec
from .sections import prog_type_of

ELF_MAGIC = b"\x7fELF"


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


__all__ = ["ObjectFile", "ProgramSpec", "MapSpec", "LoadedObject", "prog_type_of", "is_elf", "ELF_MAGIC"]

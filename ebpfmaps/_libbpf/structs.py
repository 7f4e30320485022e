"""ctypes mirrors of the libbpf 1.1 option structs and the kernel's info structs.

Every struct here is checked field by field against the installed C headers by
``tests/test_struct_layout.py`` (a C program prints sizeof/offsetof). The opts
structs carry ``sz`` first: libbpf refuses a zero ``sz`` with EINVAL and uses it
to know which fields the caller knows about, so :func:`new_opts` always sets it.
"""

from __future__ import annotations

import ctypes

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import TypeVar

    _S = TypeVar("_S", bound=ctypes.Structure)

BPF_OBJ_NAME_LEN = 16


class BpfMapCreateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32),
        ("map_ifindex", ctypes.c_uint32),
    ]


class BpfMapBatchOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class BpfObjGetOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("file_flags", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),  # `size_t :0` rounds the struct up to 16
    ]


class BpfGetFdByIdOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("open_flags", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class BpfMapInfo(ctypes.Structure):
    """``struct bpf_map_info`` as libbpf 1.1's uapi header has it (88 bytes).

    Newer kernels append fields; passing our length makes them write only what we
    know, so a bigger kernel struct never overruns this buffer.
    """

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class BpfProgInfo(ctypes.Structure):
    """The leading part of ``struct bpf_prog_info`` (type, id, tag, name, ...).

    Only a prefix is declared; the kernel copies ``min(len, sizeof)`` bytes.
    """

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


class BpfProgLoadOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("attempts", ctypes.c_int),
        ("expected_attach_type", ctypes.c_uint32),
        ("prog_btf_fd", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_ifindex", ctypes.c_uint32),
        ("kern_version", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32),
        ("fd_array", ctypes.c_void_p),
        ("func_info", ctypes.c_void_p),
        ("func_info_cnt", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_void_p),
        ("line_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_void_p),
    ]


class BpfTestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class BpfObjectOpenOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_removed_attach_prog_fd", ctypes.c_uint32),  # `__u32 :32` in the header
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_void_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


class BpfBtfLoadOpts(ctypes.Structure):
    """``struct bpf_btf_load_opts``: the kernel's verifier log for a BTF blob (used by ebpfmaps.btf)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("log_buf", ctypes.c_void_p),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
    ]


class BpfBtfInfo(ctypes.Structure):
    """``struct bpf_btf_info`` (linux/bpf.h): BTF_OBJ_GET_INFO_BY_FD fills it; ``btf`` points at a buffer
    that receives the raw BTF blob (used by ebpfmaps_shim to read the metadata of extensible maps)."""

    _fields_ = [
        ("btf", ctypes.c_uint64),
        ("btf_size", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("name", ctypes.c_uint64),
        ("name_len", ctypes.c_uint32),
        ("kernel_btf", ctypes.c_uint32),
    ]


def new_opts(cls: type[_S], **fields: object) -> _S:
    """An opts struct with ``sz`` set to its size and the given fields filled in."""
    opts = cls(**fields)
    opts.sz = ctypes.sizeof(cls)
    return opts


# (struct name in C, ctypes class) for the layout test.
CHECKED_STRUCTS: list[tuple[str, type[ctypes.Structure]]] = [
    ("bpf_map_create_opts", BpfMapCreateOpts),
    ("bpf_map_batch_opts", BpfMapBatchOpts),
    ("bpf_obj_get_opts", BpfObjGetOpts),
    ("bpf_get_fd_by_id_opts", BpfGetFdByIdOpts),
    ("bpf_map_info", BpfMapInfo),
    ("bpf_prog_load_opts", BpfProgLoadOpts),
    ("bpf_test_run_opts", BpfTestRunOpts),
    ("bpf_object_open_opts", BpfObjectOpenOpts),
    ("bpf_btf_load_opts", BpfBtfLoadOpts),
    ("bpf_btf_info", BpfBtfInfo),
]

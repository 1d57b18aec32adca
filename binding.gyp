{
  "target_defaults": {
    "include_dirs": [
      "<!(node -p \"require('path').dirname(require.resolve('node-addon-api/package.json'))\")"
    ],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-O2"]
  },
  "targets": [
    {
      "target_name": "edgeway_native",
      "sources": [
        "native/src/addon.cc",
        "native/src/pool.cc",
        "native/src/sockmap-link.cc",
        "native/src/bpf-sys.cc",
        "native/src/origdst.cc",
        "native/src/reuseport.cc",
        "native/src/dns-udp.cc",
        "native/src/aead-pump.cc",
        "native/src/evp.cc"
      ],
      "defines": ["EDGEWAY_HAVE_UV=1"],
      "libraries": ["-lpthread", "-ldl"]
    },
    {
      "target_name": "edgeway_bpf",
      "sources": [
        "native/src/bpf-addon.cc",
        "native/src/sockmap.cc",
        "native/src/bpfobj.cc"
      ],
      "libraries": ["-lbpf", "-lpthread"]
    }
  ],
  "conditions": [
    ["<!(test -f /usr/include/nftables/libnftables.h && echo 1 || echo 0)==1", {
      "targets": [
        {
          "target_name": "edgeway_nft",
          "sources": ["native/src/nft-addon.cc"],
          "libraries": ["-lnftables", "-lpthread"]
        }
      ]
    }]
  ]
}

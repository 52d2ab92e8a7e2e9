#!/usr/bin/env bash
# Build real BVLC Caffe (CPU only) from the PyPI sdist brocolli-caffe==9.0.2 and install pycaffe
# into a Python environment.
#
# Usage: compare/golden/build_caffe.sh [PYTHON]      (PYTHON defaults to `python3`)
#
# Idempotent and cached: the build lives in ${RGR_CAFFE_CACHE:-$HOME/.cache/radiogenomics-replica/caffe-brocolli-9.0.2}/<key>
# where <key> hashes the sdist version and this script's patch steps; a second run only re-copies
# install/python/caffe into PYTHON's site-packages.
#
# Why not `pip install brocolli-caffe`: its setup.py needs conda and refuses Python > 3.9. So we fetch the
# sdist by name and build it with CMake directly, with these source patches:
#   * python/CMakeLists.txt links `-lboost_python`; Debian names it `-lboost_python3XY`.
#   * src/caffe/net.cpp includes `caffe/test/test_caffe_main.hpp` (a gtest header); removed.
#   * data backends: the fork's cmake/Dependencies.cmake no longer wires LMDB/LevelDB (USE_LMDB=ON changes
#     nothing), so the top-level CMakeLists.txt gets add_definitions(-DUSE_LMDB -DUSE_LEVELDB -DUSE_HDF5) and
#     every target links -llmdb -lleveldb -lsnappy.
#   * the `caffe` tool: src/caffe/CMakeLists.txt comments out add_library(caffe) and the top-level file
#     comments out add_subdirectory(tools); both restored. pycaffe's _caffe.so then links libcaffe.so instead
#     of compiling every source a second time (libcaffe.so is copied next to _caffe.so, RPATH $ORIGIN).
#   * tools/caffe.cpp train() accepts --weights but the fork dropped the code that uses it (upstream's
#     CopyLayers, or its later SolverParameter.weights): `caffe train --weights W` silently started from the
#     fillers. Upstream's CopyLayers (weights into the train net and every test net, comma-separated list) is
#     put back, called when no --snapshot is given, as upstream does.
#   * BatchNorm statistics: the fork kept upstream's UpgradeNetBatchNorm (which clears a BatchNorm layer's three
#     `param { lr_mult: 0 }` specs) but dropped the loop in BatchNormLayer::LayerSetUp that then masks the three
#     statistics blobs with lr_mult 0, so the solver weight-decayed (and momentum-updated) the running mean,
#     variance and factor: real BVLC Caffe's stats change only in Forward. Upstream's loop is put back.
# The tool binaries end up in <src>/install/bin (caffe, upgrade_net_proto_text, ...); the path of the `caffe` binary is
# written to $WORK/CAFFE_BIN and to ${RGR_CAFFE_CACHE}/caffe_bin.txt (the newest build), which
# compare/golden/caffe_tool.py reads (RGR_CAFFE_BIN overrides).
# Set RGR_CAFFE_NO_APT=1 to skip installing Debian packages.
set -euo pipefail

PY="${1:-python3}"
PY="$(command -v "$PY")"
VERSION=9.0.2
PATCH_ID="boostpy-lib+drop-test-include+cpu-only+lmdb-leveldb-hdf5+tools+train-weights+bn-mask-v4"
PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
# the cache key: sdist version + patch steps + the Python minor version (_caffe.so links libpython3.X)
KEY="$(printf '%s|%s|python%s' "$VERSION" "$PATCH_ID" "$PYVER" | sha256sum | cut -c1-12)"
ROOT="${RGR_CAFFE_CACHE:-$HOME/.cache/radiogenomics-replica/caffe-brocolli-$VERSION}"
WORK="$ROOT/$KEY"
PYVER_NODOT="${PYVER/./}"
log() { echo "[build_caffe $(date -u +%H:%M:%S)] $*" >&2; }

apt_deps=(build-essential cmake protobuf-compiler libprotobuf-dev libgoogle-glog-dev libgflags-dev libhdf5-dev
          libopenblas-dev libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-regex-dev
          libboost-python-dev liblmdb-dev libleveldb-dev libsnappy-dev)
if [[ "${RGR_CAFFE_NO_APT:-0}" != 1 ]]; then
    missing=()
    for p in "${apt_deps[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if ((${#missing[@]})); then
        SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
        log "installing Debian packages: ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_deps[@]}" >/dev/null
    fi
fi

mkdir -p "$WORK"
if [[ ! -f "$WORK/BUILD_OK" ]]; then
    t0=$(date +%s)
    # pycaffe's build needs numpy headers; use the target env's numpy.
    "$PY" -c 'import numpy' 2>/dev/null || "$PY" -m pip install -q numpy
    NUMPY_INC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
    BASE="$("$PY" -c 'import sys; print(sys.base_prefix)')"
    if ! ls "$WORK"/brocolli-caffe-$VERSION.tar.gz >/dev/null 2>&1 && ! ls "$WORK"/brocolli_caffe-$VERSION.tar.gz >/dev/null 2>&1; then
        log "downloading sdist brocolli-caffe==$VERSION"
        "$PY" -m pip download -q --no-deps --no-binary :all: "brocolli-caffe==$VERSION" -d "$WORK"
    fi
    SDIST="$(ls "$WORK"/brocolli?caffe-$VERSION.tar.gz | head -1)"
    rm -rf "$WORK/src"; mkdir -p "$WORK/src"
    tar -xzf "$SDIST" -C "$WORK/src"
    SRC="$(dirname "$(find "$WORK/src" -maxdepth 3 -name CMakeLists.txt -path '*/python/*' | head -1)")/.."
    SRC="$(cd "$SRC" && pwd)"
    log "source at $SRC"
    # Patch 1: Debian's boost_python library name.
    sed -i "s/-lboost_python\b/-lboost_python${PYVER_NODOT}/g" "$SRC/python/CMakeLists.txt"
    grep -q "boost_python${PYVER_NODOT}" "$SRC/python/CMakeLists.txt" || { log "patch 1 failed"; exit 1; }
    # Patch 2: drop the gtest header include from net.cpp.
    sed -i '/caffe\/test\/test_caffe_main.hpp/d' "$SRC/src/caffe/net.cpp"
    # Patch 3 (data backends) and 4 (libcaffe + tools); see the header.
    "$PY" - "$SRC" <<'PYPATCH'
import pathlib, re, sys
src = pathlib.Path(sys.argv[1])
def edit(rel, old, new, count=1):
    p = src / rel
    text = p.read_text()
    if text.count(old) < 1:
        sys.exit(f"build_caffe: patch target not found in {rel}: {old!r}")
    p.write_text(text.replace(old, new, count))
extra = "-llmdb -lleveldb -lsnappy"
edit("CMakeLists.txt", "add_subdirectory(src/caffe)\n",
     "add_definitions(-DUSE_LMDB -DUSE_LEVELDB -DUSE_HDF5)\n"
     "include_directories(${PROJECT_SOURCE_DIR}/include ${PROJECT_BINARY_DIR}/include /usr/include/hdf5/serial)\n"
     "add_subdirectory(src/caffe)\n")
edit("CMakeLists.txt", "# add_subdirectory(tools)", "add_subdirectory(tools)")
edit("src/caffe/CMakeLists.txt", "# add_library(caffe ${srcs})\n# target_link_libraries(caffe proto -lglog",
     "add_library(caffe ${srcs})\ntarget_link_libraries(caffe proto -lglog")
edit("src/caffe/CMakeLists.txt", "-lhdf5_hl -lhdf5 -lopenblas)\n# caffe_default_properties(caffe)",
     f"-lhdf5_hl -lhdf5 -lopenblas {extra})\ncaffe_default_properties(caffe)")
edit("tools/CMakeLists.txt", "-lhdf5_hl -lhdf5 -lopenblas)", f"-lhdf5_hl -lhdf5 -lopenblas {extra})")
edit("tools/caffe.cpp", "// Train / Finetune a model.\nint train() {", """// Load the weights from the specified caffemodel(s) into the train and test nets (upstream tools/caffe.cpp).
void CopyLayers(caffe::Solver<float>* solver, const std::string& model_list) {
  std::vector<std::string> model_names;
  boost::split(model_names, model_list, boost::is_any_of(",") );
  for (int i = 0; i < model_names.size(); ++i) {
    LOG(INFO) << "Finetuning from " << model_names[i];
    solver->net()->CopyTrainedLayersFrom(model_names[i]);
    for (int j = 0; j < solver->test_nets().size(); ++j) {
      solver->test_nets()[j]->CopyTrainedLayersFrom(model_names[i]);
    }
  }
}

// Train / Finetune a model.
int train() {""")
edit("tools/caffe.cpp", """    solver->Restore(FLAGS_snapshot.c_str());
  }
""", """    solver->Restore(FLAGS_snapshot.c_str());
  } else if (FLAGS_weights.size()) {
    CopyLayers(solver.get(), FLAGS_weights);
  }
""")
edit("python/CMakeLists.txt", "add_library(pycaffe SHARED ${python_srcs} ${srcs})",
     "add_library(pycaffe SHARED ${python_srcs})")
edit("python/CMakeLists.txt", "target_link_libraries(pycaffe proto ", "target_link_libraries(pycaffe caffe proto ")
edit("python/CMakeLists.txt", "-lhdf5_hl -lhdf5 -lopenblas)", f"-lhdf5_hl -lhdf5 -lopenblas {extra})")
edit("src/caffe/layers/batch_norm_layer.cpp", """  }
}

template <typename Dtype>
void BatchNormLayer<Dtype>::Reshape(""", """  }
  // Mask statistics from optimization by setting local learning rates
  // for mean, variance, and the bias correction to zero.
  for (int i = 0; i < this->blobs_.size(); ++i) {
    if (this->layer_param_.param_size() == i) {
      ParamSpec* fixed_param_spec = this->layer_param_.add_param();
      fixed_param_spec->set_lr_mult(0.f);
    } else {
      CHECK_EQ(this->layer_param_.param(i).lr_mult(), 0.f)
          << "Cannot configure batch normalization statistics as layer "
          << "parameters.";
    }
  }
}

template <typename Dtype>
void BatchNormLayer<Dtype>::Reshape(""")
PYPATCH
    grep -q '^add_subdirectory(tools)' "$SRC/CMakeLists.txt" || { log "patch 4 failed"; exit 1; }
    rm -rf "$SRC/build"; mkdir -p "$SRC/build"
    cd "$SRC/build"
    log "configuring"
    cmake .. -DCMAKE_BUILD_TYPE=Release -DCPU_ONLY=ON -DBLAS=Open \
        -DANACONDA_HOME="$BASE" -DPYTHON_VERSION="python$PYVER" \
        -DCMAKE_CXX_FLAGS="-I$NUMPY_INC -I/usr/include/hdf5/serial" \
        -DCMAKE_SHARED_LINKER_FLAGS="-L/usr/lib/x86_64-linux-gnu/hdf5/serial" \
        -DCMAKE_EXE_LINKER_FLAGS="-L/usr/lib/x86_64-linux-gnu/hdf5/serial" \
        -DCMAKE_INSTALL_RPATH='$ORIGIN;$ORIGIN/../lib' \
        -DCMAKE_INSTALL_PREFIX="$SRC/install" > "$WORK/cmake.log" 2>&1 || { tail -50 "$WORK/cmake.log"; exit 1; }
    log "compiling (make -j${RGR_CAFFE_JOBS:-2}; ~6-7 min on 2 cores)"
    # libcaffe first: the tools' and pycaffe's links race it otherwise.
    make -j"${RGR_CAFFE_JOBS:-2}" caffe > "$WORK/make.log" 2>&1 || { tail -60 "$WORK/make.log"; exit 1; }
    make -j"${RGR_CAFFE_JOBS:-2}" >> "$WORK/make.log" 2>&1 || { tail -60 "$WORK/make.log"; exit 1; }
    make install > "$WORK/install.log" 2>&1 || { tail -30 "$WORK/install.log"; exit 1; }
    # libcaffe.so next to _caffe.so ($ORIGIN) and next to the tools ($ORIGIN/../lib)
    mkdir -p "$SRC/install/lib"
    cp -a "$SRC"/build/lib/libcaffe.so* "$SRC/install/python/caffe/"
    cp -a "$SRC"/build/lib/libcaffe.so* "$SRC/install/lib/"
    if ldd "$SRC/install/bin/caffe" | grep -q "not found"; then
        log "the caffe binary misses libraries:"; ldd "$SRC/install/bin/caffe" | grep "not found"; exit 1
    fi
    echo "$SRC" > "$WORK/SRC_DIR"
    t1=$(date +%s)
    echo "build_seconds=$((t1 - t0)) date=$(date -u +%FT%TZ) python=$PYVER" > "$WORK/BUILD_OK"
    log "built in $((t1 - t0)) s"
else
    log "reusing cached build $WORK ($(cat "$WORK/BUILD_OK"))"
fi

SRC="$(cat "$WORK/SRC_DIR")"
echo "$SRC/install/bin/caffe" > "$WORK/CAFFE_BIN"
echo "$SRC/install/bin/caffe" > "$ROOT/caffe_bin.txt.tmp" && mv "$ROOT/caffe_bin.txt.tmp" "$ROOT/caffe_bin.txt"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -rf "$SITE/caffe.tmp"
cp -r "$SRC/install/python/caffe" "$SITE/caffe.tmp"
SDIST_SHA="$(sha256sum "$(ls "$WORK"/brocolli?caffe-$VERSION.tar.gz | head -1)" | cut -d' ' -f1)"
COMMIT="$(sed -n 's/^Summary: official caffe, commit id \([0-9a-f]*\).*/\1/p' "$SRC/PKG-INFO")"
cat > "$SITE/caffe.tmp/rgr_build_info.json" <<JSON
{"sdist": "brocolli-caffe==$VERSION", "sdist_sha256": "$SDIST_SHA", "upstream": "BVLC/caffe",
 "upstream_commit": "$COMMIT", "patch_id": "$PATCH_ID", "cache_key": "$KEY",
 "source_dir": "$SRC", "tools_dir": "$SRC/install/bin", "caffe_bin": "$SRC/install/bin/caffe",
 "backends": ["lmdb", "leveldb", "hdf5"], "cpu_only": true, "blas": "OpenBLAS",
 "build": "$(cat "$WORK/BUILD_OK")"}
JSON
rm -rf "$SITE/caffe"; mv "$SITE/caffe.tmp" "$SITE/caffe"
log "pycaffe installed into $SITE/caffe; caffe tool: $SRC/install/bin/caffe"
echo "$SITE/caffe"

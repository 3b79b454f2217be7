"""The in-browser custody verifier's words (the evidence page's "verify in this browser"), in Chinese and English.

Kept apart from the other page words (`text`) so that neither table is past the house limit; the lookup
(`translate`) reads both. With the SM tree kept (FIELDCASE_CUSTODY_SUITES=intl,sm) the page shows its result
beside the intl tree's: the `verify.sm.*` entries.
"""

from __future__ import annotations

# key -> (中文, English)
VERIFY: dict[str, tuple[str, str]] = {
    "verify.title": ("在本浏览器中核验", "Verify in this browser"),
    "verify.intro": (
        "浏览器自行取回每个保管事件的原文、包含证明和签名树头，用浏览器自带的 Web Crypto 计算 SHA-256 和 Ed25519 签名，"
        "不依赖服务器给出的结论。",
        "The browser fetches each custody event's leaf text, its inclusion proof and the signed tree head, and "
        "checks them with its own Web Crypto (SHA-256, Ed25519), independently of any verdict of the server."),
    "verify.button": ("在本浏览器中核验", "Verify in this browser"),
    "verify.running": ("正在核验…", "Verifying…"),
    "verify.pass": ("通过", "PASS"),
    "verify.fail": ("未通过", "FAIL"),
    "verify.all_pass": ("全部 {n} 个保管事件均包含在签名树中，树头签名有效。",
                        "All {n} custody events are in the signed tree, and the tree head's signature holds."),
    "verify.some_fail": ("{n} 个保管事件未通过核验。", "{n} custody event(s) failed verification."),
    "verify.head": ("树头：大小 {size}，根哈希 {root}，时间 {time}，密钥 {key}",
                    "Tree head: size {size}, root {root}, at {time}, key {key}"),
    "verify.sig_ok": ("树头 Ed25519 签名有效（本浏览器核验）。",
                      "The tree head's Ed25519 signature holds (checked in this browser)."),
    "verify.sig_bad": ("树头 Ed25519 签名无效！", "The tree head's Ed25519 signature does NOT hold!"),
    "verify.sig_unsupported": (
        "本浏览器的 Web Crypto 不支持 Ed25519，未能核验树头签名（包含证明已核验）。请使用 Chromium 137 或更新版本。",
        "This browser's Web Crypto has no Ed25519: the tree head's signature was NOT checked (the inclusion "
        "proofs were). Use Chromium 137 or later."),
    "verify.no_crypto": (
        "本页面不在安全上下文中（需 HTTPS 或本机地址），浏览器不提供 Web Crypto，无法核验。",
        "This page is not in a secure context (HTTPS or localhost), so the browser offers no Web Crypto: "
        "nothing can be verified here."),
    "verify.key_mismatch": ("公钥编号与树头不符", "the public key's id differs from the tree head's"),
    "verify.error": ("核验中断：{message}", "Verification stopped: {message}"),
    "verify.leaf_hash": ("叶哈希", "Leaf hash"),
    "verify.result": ("结果", "Result"),
    "verify.reason.root": ("由证明算出的根哈希与树头不符", "the root computed from the proof differs from the head's"),
    "verify.reason.other_item": ("事件不属于此证据", "the event belongs to another item"),
    "verify.reason.not_json": ("叶原文不是 JSON", "the leaf text is not JSON"),
    "verify.reason.after_head": ("事件晚于树头，尚未被覆盖", "appended after the head: not covered yet"),
    "verify.intro_sm": (
        "本服务器还以国密算法保存保管日志：浏览器另用随本系统提供的 sm-crypto-v2 库"
        "计算同一批事件的 SM3 树和树头的 SM2 签名（Web Crypto 不提供国密算法），两种结果并列显示。",
        "This server keeps the custody log in the national algorithms too: the browser also computes the same events' "
        "SM3 tree and the SM2 signature of its head with the sm-crypto-v2 library this system ships (Web Crypto has "
        "neither), and shows both results side by side."),
    "verify.result_intl": ("结果（SHA-256 树）", "Result (SHA-256 tree)"),
    "verify.sm.result": ("结果（国密 SM3 树）", "Result (SM3 tree)"),
    "verify.sm.all_pass": (
        "全部 {n} 个保管事件均包含在两棵签名树中（SHA-256 树与国密 SM3 树），两个树头签名（Ed25519 与 SM2）均有效。",
        "All {n} custody events are in both signed trees (SHA-256 and SM3), and both tree heads' signatures "
        "(Ed25519 and SM2) hold."),
    "verify.sm.head": ("国密树头（SM3 树）：大小 {size}，根哈希 {root}，时间 {time}，密钥 {key}",
                       "SM tree head (SM3): size {size}, root {root}, at {time}, key {key}"),
    "verify.sm.sig_ok": ("国密树头 SM2 签名有效（本浏览器核验）。",
                         "The SM tree head's SM2 signature holds (checked in this browser)."),
    "verify.sm.sig_bad": ("国密树头 SM2 签名无效！", "The SM tree head's SM2 signature does NOT hold!"),
    "verify.sm.some_fail": ("国密 SM3 树中 {n} 个保管事件未通过核验。",
                            "{n} custody event(s) failed verification in the SM3 tree."),
    "verify.sm.unavailable": ("国密 SM3 树未能核验：{message}", "The SM3 tree could not be verified: {message}"),
    "verify.sm.no_library": ("本页未能载入国密算法库（sm-crypto-v2）",
                             "the SM2/SM3 library (sm-crypto-v2) did not load"),
}

"""The facts the demo's story is made of: the place, the body camera's clips, how the first push is cut.

They sit apart from the code that plays, checks and reports the story, so the day can be read in one place,
and so a test can change one fact (say, the camera never being off) and watch the checks notice. The story,
the checks and the report read them as attributes of this module (`scenario.CLIPS`) for that reason.
"""

from __future__ import annotations

DISTRICT = "330106"
CENTRE = {"name": "西湖区明日之星培训中心", "region": DISTRICT, "address": "文三路 199 号 3 楼"}
HERE = {"lat": 30.2787, "lon": 120.1303, "accuracy_m": 8.0}
CUT_BATCH = 3  # records per push call in the cut-off push, so the cut lands half way
CAMERA = "DSJ-Z8-0042"  # 张敏's body camera
# The camera's clips: its own counter, start and end in seconds from the start of the inspection, size in bytes.
# The inspection lasts 9 minutes; between clips 2 and 3 the camera was off for 45 s (tolerance: 5 s).
INSPECTION_SECONDS = 540
CLIPS = ((1, -4, 200, 384 * 1024), (2, 200, 340, 256 * 1024), (3, 385, 543, 3 * 1024 * 1024))
GAP = (340, 385)
COMPLAINANT = {"name": "陈女士", "phone": "13800000000"}  # personal data: must never reach the public page
PACKAGE_PURPOSE = "移送法制审核 (for the legal review of the case file)"

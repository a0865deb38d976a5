"""Publish stage: put validated images and their reports in the release repository and move the validated tags.

`publish` pushes locally validated images through the engine; `promote` (rocmci.publish.promote) moves an image
already in staging by blob mount and manifest put, with no engine and no layer bytes. Both write
`<reports>/<entry>/publish.json` (`PublishRecord`)."""

from rocmci.publish.attach import TagMove, attach_and_move, move_validated_tag, publisher_time
from rocmci.publish.items import DocumentsFor, PublishItem, PublishResult, publish_items
from rocmci.publish.push import ImageMissing, check_before_push, publish, publish_one
from rocmci.publish.record import BuildRecord, PublishRecord, read_build_record, read_publish_record

__all__ = [
    "BuildRecord",
    "DocumentsFor",
    "ImageMissing",
    "PublishItem",
    "PublishRecord",
    "PublishResult",
    "TagMove",
    "attach_and_move",
    "check_before_push",
    "move_validated_tag",
    "publish",
    "publish_items",
    "publish_one",
    "publisher_time",
    "read_build_record",
    "read_publish_record",
]

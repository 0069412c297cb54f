"""Frames, boxes, calibration and projection: the single home for every conversion."""
from .calibration import Calibration, CalibrationError, parse_calib_file
from .boxes import (alpha_from_ry, boxes3d_kitti_camera_to_lidar_torch, boxes3d_kitti_camera_to_corners, boxes3d_kitti_camera_to_imageboxes,
                    boxes3d_kitti_camera_to_lidar, boxes3d_lidar_to_imageboxes,
                    boxes3d_lidar_to_kitti_camera, boxes_bev_corners, boxes_to_corners_3d, check_boxes,
                    corners_to_image_boxes, enlarge_box3d, limit_period, mask_boxes_outside_range,
                    points_in_image, project_boxes_lidar_to_image_torch, rotate_points_along_z,
                    boxes3d_lidar_to_aligned_bev_boxes, boxes3d_nearest_bev_iou, boxes_iou_normal)

__all__ = [n for n in dir() if not n.startswith('_')]

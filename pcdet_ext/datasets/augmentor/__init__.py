from .augmentor_utils import global_rotation, global_scaling, random_flip_along_x, random_flip_along_y
from .data_augmentor import DataAugmentor
from .database_sampler import DataBaseSampler
from .object_paste import paste_objects, remove_points_in_boxes

__all__ = ['DataAugmentor', 'DataBaseSampler', 'paste_objects', 'remove_points_in_boxes',
           'global_rotation', 'global_scaling', 'random_flip_along_x', 'random_flip_along_y']
